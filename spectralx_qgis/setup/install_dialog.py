"""The "Install dependencies" dialog: the installer (installer.py) in a QgsTask with a progress bar,
a log and cancel, and the verification's verdict in plain words."""

from __future__ import annotations

from typing import Optional

from qgis.core import QgsApplication, QgsTask
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ..outcomes import Cancelled, Done, Failed, Outcome, bug
from . import gpu_detect, proxy, python_finder, requirements, site_dir
from .errors import InstallCancelled, InstallError
from .installer import Installer, InstallOptions


class InstallTask(QgsTask):
    """Runs the installer in a worker thread; `done` is emitted on the main thread when it ends."""

    logLine = pyqtSignal(str)
    done = pyqtSignal(object)

    def __init__(self, options: InstallOptions):
        super().__init__("Installing SpectralX dependencies", QgsTask.CanCancel)
        self.options = options
        self.outcome: Optional[Outcome] = None  # Done(InstallResult), Failed or Cancelled

    def run(self):
        try:
            self.outcome = Done(
                Installer(
                    self.options, log=self.logLine.emit, progress=self.setProgress, cancelled=self.isCanceled
                ).run()
            )
            return True
        except InstallCancelled as exc:
            self.outcome = Cancelled(str(exc))
        except InstallError as exc:
            self.outcome = Failed(str(exc))
        except Exception as exc:  # noqa: BLE001  a bug: keep the traceback for the log
            self.outcome = bug(exc)
        return False

    def finished(self, result):
        if not result and (self.isCanceled() or self.outcome is None):
            self.outcome = Cancelled()
        self.done.emit(self)


def installed_state(target: str, packages_present: bool) -> str:
    """What is installed already, from the installer's record in `target` (or the one waiting for a
    restart): shown when the dialog opens, so a second visit is not a blank form."""
    waiting = site_dir.record(target + ".pending")
    rec = waiting or site_dir.record(target)
    if rec is None:
        return (
            "QGIS's Python already has every requirement: nothing to install (Install checks again)."
            if packages_present
            else ""
        )
    date = str(rec.get("date") or "")[:16].replace("T", " ")
    device = rec.get("device") if isinstance(rec.get("device"), dict) else {}
    count = len(rec.get("installed") or [])
    text = (
        f"Installed{' on ' + date if date else ''}: {count} packages ({rec.get('build', '?')} build) into "
        f"{target}." + (f" Checked: {device['line']}." if device.get("line") else "")
    )
    if waiting is not None:
        return text + " Restart QGIS to use them (the previous installation was in use)."
    return text + (
        " SpectralX's dependencies are loaded in this QGIS." if packages_present else " Restart QGIS to use them."
    )


class InstallDialog(QDialog):
    """Shows what will be installed where, runs it, and reports what really happened."""

    installed = pyqtSignal(object)  # the InstallResult of a successful install

    def __init__(self, parent=None, root: Optional[str] = None, python: Optional[str] = None):
        # Long (~85 lines): the dialog's form built once in reading order (Python, build, device,
        # offline folder, requirements, log, buttons); splitting it would scatter one layout.
        super().__init__(parent)
        self.setWindowTitle("SpectralX: install dependencies")
        self.setMinimumWidth(560)
        self.root = root or site_dir.default_root()
        self.task: Optional[InstallTask] = None
        self.last_task: Optional[InstallTask] = None
        lay = QVBoxLayout(self)

        intro = QLabel(
            "SpectralX installs the packages below with QGIS's own Python into a folder of your "
            "QGIS profile (no administrator rights). Packages QGIS's Python already has are kept; "
            "numpy is always QGIS's own. Afterwards it checks that everything imports and runs a "
            "matrix product on the chosen device."
        )
        intro.setWordWrap(True)
        lay.addWidget(intro)
        self.requirement_view = QPlainTextEdit("\n".join(requirements.lines()))
        self.requirement_view.setReadOnly(True)
        self.requirement_view.setMaximumHeight(120)
        lay.addWidget(self.requirement_view)

        form = QFormLayout()
        self.python_widget = QgsFileWidget()
        self.python_widget.setToolTip("QGIS's own Python interpreter, found and checked automatically")
        try:
            found = python_finder.find() if python is None else python_finder.probe(python)
            self.python_widget.setFilePath(found.path)
            self.target = site_dir.folder(self.root, found.tag)
        except InstallError as exc:
            self.python_widget.setFilePath(python or "")
            self.target = site_dir.folder(self.root)
            self.python_widget.setToolTip(str(exc))
        form.addRow("QGIS's Python", self.python_widget)
        target = QLabel(self.target)
        target.setWordWrap(True)
        form.addRow("Installs into", target)

        self.gpus = gpu_detect.nvidia_gpus()
        self.build_combo = QComboBox()
        for build in gpu_detect.builds(self.gpus):
            self.build_combo.addItem(build.label, build.id)
        form.addRow("PyTorch build", self.build_combo)
        gpu_label = QLabel(gpu_detect.describe(self.gpus))
        gpu_label.setWordWrap(True)
        form.addRow("GPU", gpu_label)

        self.offline_check = QCheckBox("Install only from a local folder of wheels (offline)")
        self.wheel_widget = QgsFileWidget()
        self.wheel_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.wheel_widget.setEnabled(False)
        self.offline_check.toggled.connect(self.wheel_widget.setEnabled)
        self.offline_check.toggled.connect(self.build_combo.setDisabled)
        self.offline_check.setToolTip(
            "Only wheels (.whl) are installed from the folder, never source packages; "
            "wheels run inside QGIS once installed, so use a folder you trust"
        )
        form.addRow(self.offline_check)
        form.addRow("Wheel folder", self.wheel_widget)
        self.proxy_url = proxy.qgis_proxy_url()
        form.addRow("Network", QLabel(proxy.describe(self.proxy_url)))
        lay.addLayout(form)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        lay.addWidget(self.progress)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        lay.addWidget(self.verdict)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setMinimumHeight(160)
        lay.addWidget(self.log_view)

        buttons = QDialogButtonBox()
        self.install_button = QPushButton("Install")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.close_button = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        lay.addWidget(buttons)
        self.install_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.show_installed_state()

    def show_installed_state(self) -> None:
        """The verdict line and progress bar say what is installed (nothing while an install runs)."""
        if self.task is not None:
            return
        from . import deps

        text = installed_state(self.target, deps.ok())
        if text:
            self.verdict.setText(text)
            self.progress.setValue(100)

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        if self.task is None and self.last_task is None:  # after a run its own verdict stays
            self.show_installed_state()

    # ------------------------------------------------------------------ run
    def options(self) -> InstallOptions:
        offline = self.offline_check.isChecked()
        return InstallOptions(
            python=self.python_widget.filePath() or None,
            wheel_folder=(self.wheel_widget.filePath() or None) if offline else None,
            build=self.build_combo.currentData() or "auto",
            proxy=self.proxy_url,
            root=self.root,
        )

    def start(self) -> Optional[InstallTask]:
        if self.task is not None:
            return None
        opts = self.options()
        if self.offline_check.isChecked() and not opts.wheel_folder:
            self.verdict.setText("Choose the folder that holds the wheels, or untick the offline option.")
            return None
        self.log_view.clear()
        self.verdict.setText("Installing…")
        self.progress.setValue(0)
        self.task = InstallTask(opts)
        self.task.logLine.connect(self.log_view.appendPlainText)
        self.task.progressChanged.connect(lambda v: self.progress.setValue(int(v)))
        self.task.done.connect(self._finished)
        self.install_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def cancel(self):
        if self.task is not None:
            self.cancel_button.setEnabled(False)
            self.verdict.setText("Cancelling…")
            self.task.cancel()

    def _finished(self, task: InstallTask):
        self.last_task, self.task = task, None
        self.install_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        outcome = task.outcome
        if isinstance(outcome, Done):
            self.progress.setValue(100)
            self.verdict.setText(outcome.value.message)
            self.installed.emit(outcome.value)
        elif isinstance(outcome, Cancelled):
            self.progress.setValue(0)
            self.verdict.setText("Cancelled: nothing was installed (the unfinished folder was removed).")
        else:
            self.verdict.setText(f"Not installed: {outcome.line}")
            if "\n" in outcome.message:
                self.log_view.appendPlainText(outcome.message)

    def closeEvent(self, event):  # noqa: N802
        if self.task is not None:  # never leave an install running behind a closed dialog
            self.cancel()
        super().closeEvent(event)

    def is_running(self) -> bool:
        return self.task is not None
