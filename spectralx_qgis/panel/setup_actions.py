"""The panel's header and setup side: the missing-dependencies box (guidance, installer, manual command),
the installer, model manager and help windows, the device list and the output folder setting."""

from __future__ import annotations

from qgis.core import Qgis, QgsSettings
from qgis.PyQt.QtCore import QObject
from qgis.PyQt.QtWidgets import QApplication, QDialog, QTextBrowser, QVBoxLayout

from .._vendor.spectralx.contract import defaults
from ..setup import deps


class SetupActions(QObject):
    """What the header's buttons and the dependency box do, for `dock`."""

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock
        self.install_dialog = None
        self.model_dialog = None
        self.help_dialog = None

    def check_dependencies(self, refresh: bool = False) -> bool:
        """Show the guidance and disable the controls when packages are missing; else fill the lists
        that need the engine (devices, sensors, checkpoints)."""
        dock = self.dock
        deps.check(refresh=refresh)
        text = deps.guidance(html=True, command=False)
        if text:
            dock.guidance.setText(text)
            dock.manual_command.setText(deps.install_command())
            dock.manual_command.setCursorPosition(0)
            dock.install_box.show()
            dock.install_deps_button.show()
            dock.controls.setEnabled(False)
            return False
        dock.install_box.hide()
        dock.install_deps_button.hide()
        dock.controls.setEnabled(True)
        self.fill_devices()
        from .._vendor.spectralx import bands

        dock.bands.fill_sensors(bands.list_sensors())
        dock.checkpoints.reload()
        return True

    def fill_devices(self):
        combo = self.dock.device_combo
        combo.clear()
        try:
            from .._vendor.spectralx import devices

            available = devices.available_devices()
        except Exception as exc:  # noqa: BLE001
            available = [("cpu", "CPU")]
            self.dock.status.setText(f"Device list unavailable: {exc}")
        combo.addItem("Automatic (best available)", defaults.DEVICE)
        for dev_id, label in available:
            combo.addItem(label, dev_id)

    def copy_manual_command(self):
        QApplication.clipboard().setText(self.dock.manual_command.text())
        self.dock.status.setText("Install command copied: run it in a terminal, then restart QGIS.")

    def open_installer(self):
        """The dependency installer's dialog (non-modal: QGIS stays usable while it installs)."""
        from ..setup.install_dialog import InstallDialog

        if self.install_dialog is None:
            self.install_dialog = InstallDialog(self.dock)
            self.install_dialog.installed.connect(self.installed)
        self.install_dialog.show()
        self.install_dialog.raise_()
        return self.install_dialog

    def installed(self, result):
        if self.check_dependencies(refresh=True):
            self.dock._message("SpectralX dependencies installed: " + result.message, Qgis.Success)
        elif not result.live_now:
            self.dock._message(result.message, Qgis.Warning)

    def open_model_manager(self):
        """The model manager: models in the user folder, backbone import, known releases."""
        from ..models.manager import ModelManagerDialog

        if self.model_dialog is None:
            self.model_dialog = ModelManagerDialog(self.dock)
            self.model_dialog.modelsChanged.connect(self.dock.checkpoints.reload)
        self.model_dialog.show()
        self.model_dialog.raise_()
        return self.model_dialog

    def open_help(self):
        """The help in a QGIS window (a system browser may not exist, or not open from QGIS)."""
        from .help_text import HELP_HTML

        if self.help_dialog is None:
            self.help_dialog = QDialog(self.dock)
            self.help_dialog.setWindowTitle("SpectralX help")
            browser = QTextBrowser(self.help_dialog)
            browser.setOpenExternalLinks(True)
            browser.setHtml(HELP_HTML)
            QVBoxLayout(self.help_dialog).addWidget(browser)
            self.help_dialog.resize(640, 700)
        self.help_dialog.show()
        self.help_dialog.raise_()
        return self.help_dialog

    def save_output_dir(self, path):
        QgsSettings().setValue(defaults.SETTING_OUTPUT_DIR, path)
