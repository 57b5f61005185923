"""The panel's reporting parts, kept out of dock.py: the *Vector output (MMU)* option (polygons of each
segmentation, made in the background after it and loaded styled), and the accuracy and area report
(the Processing dialog, then the HTML report opened inside QGIS)."""

from __future__ import annotations

import os
from typing import Optional

from qgis.core import Qgis, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer, QUrl
from qgis.PyQt.QtWidgets import QCheckBox, QDialog, QHBoxLayout, QLineEdit, QTextBrowser, QVBoxLayout, QWidget

from .. import styling
from .tasks import Done, EngineTask

DEFAULT_MMU = "0.5ha"


class VectorOption(QWidget):
    """[x] polygons too, with this minimum mapping unit."""

    def __init__(self, parent=None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.check = QCheckBox("Polygons, MMU")
        self.check.setToolTip(
            "Also write the classes as polygons (GeoPackage beside the class raster), regions "
            "smaller than the minimum mapping unit merged into their largest neighbour; each "
            "polygon gets its class, area (ha) and mean confidence"
        )
        self.mmu_edit = QLineEdit(DEFAULT_MMU)
        self.mmu_edit.setToolTip("Minimum mapping unit: 0.5ha, 5000m2 or 12px")
        self.mmu_edit.setEnabled(False)
        self.check.toggled.connect(self.mmu_edit.setEnabled)
        row.addWidget(self.check)
        row.addWidget(self.mmu_edit)

    def wanted(self) -> bool:
        return self.check.isChecked()

    def mmu(self) -> Optional[str]:
        return self.mmu_edit.text().strip() or None


class VectorizeTask(EngineTask):
    def __init__(self, classes: str, output: str, mmu: Optional[str], confidence: Optional[str] = None, callback=None):
        super().__init__(f"SpectralX: polygons of {os.path.basename(classes)}", callback)
        self.classes, self.output, self.mmu, self.confidence = classes, output, mmu, confidence
        self.outputs = [output]

    def work(self, progress):
        from .._vendor.spectralx import vectorize

        return vectorize.vectorize(
            self.classes, self.output, mmu=self.mmu, confidence=self.confidence, progress=progress
        )


def load_polygons(path: str, name: str) -> QgsVectorLayer:
    """The polygons in the SpectralX group, with the style stored in the GeoPackage (class colours)."""
    from .._vendor.spectralx import vectorize

    layer = QgsVectorLayer(f"{path}|layername={vectorize.LAYER}", name, "ogr")
    if not layer.isValid():
        raise RuntimeError(f"could not load the polygons {path}")
    layer.loadDefaultStyle()
    styling.add_to_group(layer)
    return layer


def vectorize_after(dock, task, name: str):
    """After a successful segmentation with the option on: polygons in the background, then loaded."""
    option = getattr(dock, "vector_option", None)
    if option is None or not option.wanted() or not isinstance(task.outcome, Done):
        return None
    out, conf = task.outcome.value.output, task.outcome.value.confidence
    gpkg = os.path.splitext(out)[0] + "_polygons.gpkg"
    started = []

    def done(t):
        if isinstance(t.outcome, Done):
            try:
                dock.last_polygons = load_polygons(gpkg, f"{name} · polygons")
            except Exception as exc:  # noqa: BLE001
                dock._message(str(exc), Qgis.Critical)

    def start():
        try:
            from .._vendor.spectralx import class_raster, vectorize

            vectorize.threshold_pixels(option.mmu() or "1px", class_raster.describe(out).pixel_area_ha)
        except Exception as exc:  # noqa: BLE001  (an MMU below a pixel, a unit typo: one line)
            dock._message(f"Polygons not made: {exc}", Qgis.Warning)
            return
        started.append(dock.runs.start(VectorizeTask(out, gpkg, option.mmu(), conf), done))

    QTimer.singleShot(0, start)  # after the segmentation's own end-of-run signals
    return started


def show_report(html_path: str, parent=None) -> QDialog:
    """The HTML report in a QGIS window (tables and the embedded chart), non-modal."""
    dialog = QDialog(parent)
    dialog.setWindowTitle(f"SpectralX: {os.path.basename(html_path)}")
    browser = QTextBrowser(dialog)
    browser.setOpenExternalLinks(True)
    browser.setSearchPaths([os.path.dirname(html_path)])
    browser.setSource(QUrl.fromLocalFile(html_path))
    QVBoxLayout(dialog).addWidget(browser)
    dialog.resize(900, 700)
    dialog.show()
    return dialog


def run_report(dock) -> Optional[QDialog]:
    """The Processing dialog of *Accuracy and area report* (the last class raster preselected); when it
    has run, its HTML report opens in QGIS."""
    import processing

    params = {}
    last = [lyr for lyr in (getattr(dock, "last_layers", None) or []) if lyr.providerType() == "gdal"]
    if last:
        params["PREDICTION"] = last[0]
    results = processing.execAlgorithmDialog("spectralx:accuracy_area_report", params)
    html = (results or {}).get("OUTPUT")
    if html and os.path.isfile(html):
        dock.report_dialog = show_report(html, dock)
        return dock.report_dialog
    return None
