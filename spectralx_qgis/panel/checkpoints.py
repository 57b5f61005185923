"""The panel's checkpoint picker: the models it knows (the model folder first, then the bundled demo
model and the recently used ones), the file dialog, and the model card of the selected checkpoint
(read with the contract's torch-free reader, so it shows before PyTorch is installed)."""

from __future__ import annotations

import os
from typing import List

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QObject, Qt
from qgis.PyQt.QtWidgets import QFileDialog

from .._vendor.spectralx.contract import card as model_card
from .._vendor.spectralx.contract import defaults, errors
from ..models import store as model_store

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def known_checkpoint_paths() -> List[str]:
    """Recently used checkpoints, then the model folder's, then the bundled demo model's (existing files)."""
    paths = QgsSettings().value(defaults.SETTING_CHECKPOINTS, []) or []
    if isinstance(paths, str):
        paths = [paths]
    # what the model manager knows (the user model folder) first, then the bundled demo model
    folders = [
        model_store.user_model_dir(),
        os.path.join(PLUGIN_DIR, "demo_models"),
        os.path.join(os.path.dirname(PLUGIN_DIR), "resources", "models"),
    ]
    for folder in folders:
        if os.path.isdir(folder):
            paths += model_store.checkpoint_paths(folder)
    out = []
    for p in paths:
        if p and os.path.isfile(p) and p not in out:
            out.append(p)
    return out


class CheckpointPicker(QObject):
    """Fills `dock.checkpoint_combo`, keeps `dock.card` (None when nothing readable is selected) and
    shows it in `dock.card_view`; emits `dock.checkpointChanged(path)` for a readable checkpoint."""

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock
        self.combo = dock.checkpoint_combo

    def path(self) -> str:
        return self.combo.currentData() or ""

    def reload(self):
        """(Re)fill the picker; the chosen checkpoint stays chosen (a refresh after an install or a
        model-manager change must not drop the analyst's model and its card)."""
        current = self.path()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem("— choose a checkpoint —", "")
        paths = known_checkpoint_paths()
        if current and current not in paths and os.path.isfile(current):
            paths.insert(0, current)
        for p in paths:
            self._add(p)
        if current:
            self.combo.setCurrentIndex(max(self.combo.findData(current), 0))
        self.combo.blockSignals(False)
        if current and (not self.path() or self.dock.card is None):
            self.changed()  # the file is gone (said through the card), or a stale error: read again

    def _add(self, path: str) -> int:
        self.combo.addItem(os.path.basename(path), path)
        self.combo.setItemData(self.combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        return self.combo.count() - 1

    def browse(self):
        path, _ = QFileDialog.getOpenFileName(
            self.dock, "Open a SpectralX checkpoint", "", "SpectralX checkpoint (*.safetensors)"
        )
        if path:
            self.select(path)

    def select(self, path: str) -> bool:
        """Select (adding if needed) a checkpoint; shows its model card. True when it could be read."""
        path = os.path.abspath(path)
        idx = self.combo.findData(path)
        if idx < 0:
            idx = self._add(path)
        if self.combo.currentIndex() == idx:
            self.changed(idx)
        else:
            self.combo.setCurrentIndex(idx)
        return self.dock.card is not None

    def changed(self, _index=None):
        dock, path = self.dock, self.path()
        dock.card = None
        if not path:
            dock.card_view.clear_card()
            dock.refresh_bands()
            return
        try:
            dock.card = model_card.read_card(path)
        except Exception as exc:  # noqa: BLE001  (engine errors are one-liners)
            dock.card_view.show_error(errors.for_qgis(exc, "dock"))
            dock.refresh_bands()
            return
        key = defaults.SETTING_CHECKPOINTS
        known = [p for p in (QgsSettings().value(key, []) or []) if p != path]
        QgsSettings().setValue(key, ([path] + known)[:20])
        dock.card_view.show_card(dock.card, path)
        dock.checkpointChanged.emit(path)
        dock.refresh_bands()
