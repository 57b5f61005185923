"""Issue 12 in the panel: the installer's dialog from the dock, and the checkpoint picker listing what
the model manager knows (pytest-qgis, offscreen)."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from test_plugin_common import REPO, dock, plugin, wait_for  # noqa: F401  (fixtures)

from spectralx_qgis.setup import requirements

DEMO = os.path.join(REPO, "resources", "models", "demo.safetensors")
DEMO_BACKBONE = os.path.join(REPO, "resources", "models", "demo-backbone.safetensors")


@pytest.mark.slow
def test_install_dialog_from_the_panel_verifies_this_qgis(dock, tmp_path):
    dialog = dock.open_installer()
    assert dialog is dock.open_installer()  # one dialog, raised again
    assert dialog.requirement_view.toPlainText().splitlines() == requirements.lines()
    assert os.path.realpath(dialog.python_widget.filePath()) == os.path.realpath(sys.executable)
    assert dialog.build_combo.count() >= 1 and dialog.build_combo.itemData(dialog.build_combo.count() - 1) == "cpu"
    dialog.root = str(tmp_path / "packages")  # never the test profile's real folder
    results = []
    dialog.installed.connect(results.append)
    task = dialog.start()
    assert task is not None and dialog.start() is None  # one install at a time
    wait_for(lambda: dialog.last_task is task, 300)
    assert results and results[0].installed == []  # this QGIS's Python has the whole list
    assert dialog.verdict.text().startswith("QGIS's Python already has every requirement. CPU: matmul ok")
    assert "Resolving against what QGIS's Python already has" in dialog.log_view.toPlainText()
    assert dialog.progress.value() == 100 and dialog.install_button.isEnabled()
    assert dock.controls.isEnabled() and not dock.install_box.isVisibleTo(dock)
    dialog.close()


def test_checkpoint_picker_lists_the_model_folder(dock, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(DEMO, folder / "potsdam.safetensors")
    shutil.copy(DEMO_BACKBONE, folder / "demo-backbone.safetensors")
    monkeypatch.setenv("SPECTRALX_MODELS", str(folder))
    dock.checkpoints.reload()
    listed = [dock.checkpoint_combo.itemData(i) for i in range(dock.checkpoint_combo.count())]
    assert str(folder / "potsdam.safetensors") in listed
    assert str(folder / "demo-backbone.safetensors") not in listed  # a backbone is not a checkpoint
    # a model the manager adds appears in the picker when the manager says the folder changed
    manager = dock.open_model_manager()
    shutil.copy(DEMO, folder / "second.safetensors")
    manager.modelsChanged.emit()
    listed = [dock.checkpoint_combo.itemData(i) for i in range(dock.checkpoint_combo.count())]
    assert str(folder / "second.safetensors") in listed
    assert dock.set_checkpoint(str(folder / "second.safetensors"))  # and its card reads
    # a later refresh (another model added, dependencies installed) keeps the analyst's choice and card
    card = dock.card
    shutil.copy(DEMO, folder / "third.safetensors")
    manager.modelsChanged.emit()
    assert dock.checkpoint_path() == str(folder / "second.safetensors") and dock.card is card
    manager.close()
