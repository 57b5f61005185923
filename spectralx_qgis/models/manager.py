"""The model manager dialog: the model folder's checkpoints and backbones, adding a backbone from a
release file (the engine's importer), and the known foundation-model releases with their pages,
licences and, where there is a direct address, a resumable sha256-checked download.

The dialog only wires widgets to model_store (listing), model_catalog (releases) and download
(HTTP); the import runs `spectralx.backbone_io.import_backbone` in a QgsTask.
"""

from __future__ import annotations

import html
import os
from typing import Callable, List, Optional

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import Qt, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor, QDesktopServices, QFont
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..outcomes import Cancelled, Done, Failed, Outcome, bug
from ..setup import deps
from ..setup.proxy import qgis_proxy_url
from . import add as model_add
from . import catalog as model_catalog
from . import download
from . import store as model_store

MODEL_COLUMNS = [
    "Name",
    "Kind",
    "Backbone",
    "Sensor",
    "Bands",
    "Classes",
    "Tile",
    "Val mIoU",
    "Forest mIoU",
    "Method",
    "Size",
]
RELEASE_COLUMNS = ["Release", "Family", "Licence", "Size", "Access", "Source page"]
RELEASES_SUBFOLDER = "releases"  # downloaded release files, kept beside their imports
_WARN = QColor("#b00020")
_DIM = QColor("#707070")


def _miou(v: Optional[float]) -> str:
    return "" if v is None else f"{v:.3f}"


class DownloadTask(QgsTask):
    """download.download() in a worker thread; `callback(task)` on the main thread at the end."""

    progressed = pyqtSignal(object, object)  # bytes done, total (None when unknown)

    def __init__(
        self,
        release: model_catalog.Release,
        dest: str,
        proxy: Optional[str],
        callback: Callable[["DownloadTask"], None],
    ):
        super().__init__(f"SpectralX: download {release.name}", QgsTask.CanCancel)
        self.release, self.dest, self.proxy, self.callback = release, dest, proxy, callback
        self.outcome: Optional[Outcome] = None  # Done(DownloadResult), Failed or Cancelled
        self._last = -1

    def _progress(self, done: int, total: Optional[int]) -> None:
        if total:
            self.setProgress(100.0 * done / total)
        step = done >> 22  # a signal every 4 MB, not per chunk
        if step != self._last or done == total:
            self._last = step
            self.progressed.emit(done, total)

    def run(self):
        try:
            self.outcome = Done(
                download.download(
                    self.release.url,
                    self.dest,
                    expected_sha256=self.release.sha256,
                    progress=self._progress,
                    cancelled=self.isCanceled,
                    proxy=self.proxy,
                    expected_size=self.release.size,
                )
            )
            return True
        except download.DownloadCancelled as exc:
            self.outcome = Cancelled(str(exc))
        except download.DownloadError as exc:
            self.outcome = Failed(str(exc))
        except Exception as exc:  # noqa: BLE001  a bug: keep the traceback for the log
            self.outcome = bug(exc)
        return False

    def finished(self, result):
        self.callback(self)


class ImportTask(QgsTask):
    """The engine's backbone importer (release file -> SpectralX backbone file) in a worker thread."""

    def __init__(self, source: str, dest: str, family: str, callback: Callable[["ImportTask"], None]):
        super().__init__(f"SpectralX: import {os.path.basename(source)}", QgsTask.CanCancel)
        self.source, self.dest, self.family, self.callback = source, dest, family, callback
        self.outcome: Optional[Outcome] = None  # Done(the importer's result), Failed or Cancelled

    def run(self):
        try:
            deps.require()
            from .._vendor.spectralx import backbone_io
            from .._vendor.spectralx.contract import errors
        except deps.MissingDependencies as exc:
            self.outcome = Failed(str(exc))
            return False
        try:
            result = backbone_io.import_backbone(self.source, self.dest, family=self.family)
        except errors.SpectralXError as exc:
            self.outcome = Failed(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001
            self.outcome = bug(exc)
            return False
        if self.isCanceled():  # the importer has no cancel point: drop its output afterwards
            self.outcome = Cancelled()
            if os.path.exists(self.dest):
                os.remove(self.dest)
            return False
        # hashed here, in the worker, so the listing that follows (main thread) reads it from the cache
        cache = model_store.DigestCache(os.path.dirname(self.dest))
        cache.sha256(self.dest)
        cache.save()
        self.outcome = Done(result)
        return True

    def finished(self, result):
        self.callback(self)


class CopyTask(QgsTask):
    """model_add.add() in a worker thread (copying a 1 GB backbone must not freeze QGIS)."""

    def __init__(self, plan: model_add.AddPlan, callback: Callable[["CopyTask"], None]):
        super().__init__(f"SpectralX: add {os.path.basename(plan.destination)}", QgsTask.CanCancel)
        self.plan, self.callback = plan, callback
        self.outcome: Optional[Outcome] = None  # Done(how each file was added), Failed or Cancelled

    def run(self):
        try:
            self.outcome = Done(model_add.add(self.plan, self.isCanceled))
        except model_add.AddError as exc:
            self.outcome = Cancelled(str(exc)) if self.isCanceled() else Failed(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001  a bug: keep the traceback for the log
            self.outcome = bug(exc)
            return False
        return True

    def finished(self, result):
        self.callback(self)


class ModelManagerDialog(QDialog):
    """Lists the model folder, adds backbones, downloads known releases. `modelsChanged` is emitted
    whenever the folder's content changed (the dock refreshes its checkpoint picker)."""

    modelsChanged = pyqtSignal()
    taskFinished = pyqtSignal(object)  # every download/import task, once handled (tests, dock)

    def __init__(
        self, parent=None, folder: Optional[str] = None, releases: Optional[List[model_catalog.Release]] = None
    ):
        # Long (~80 lines): the dialog's widgets, built once in reading order (models table, its buttons,
        # releases table, status); splitting it would only scatter one layout over several methods.
        super().__init__(parent)
        self.setWindowTitle("SpectralX: models")
        self.resize(1000, 640)
        self.folder = os.path.abspath(folder or model_store.user_model_dir())
        self.catalog_error = ""
        if releases is None:
            try:
                releases = model_catalog.load()
            except model_catalog.CatalogError as exc:
                releases, self.catalog_error = [], str(exc)
        self.releases: List[model_catalog.Release] = list(releases)
        self.entries: List[model_store.ModelEntry] = []
        self.task: Optional[QgsTask] = None
        self.last_task: Optional[QgsTask] = None
        self._download_note = ""  # what the download found, kept in the import's status

        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_label.setWordWrap(True)
        top.addWidget(self.folder_label, 1)
        self.open_button = QPushButton("Open folder")
        self.open_button.clicked.connect(self.open_folder)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("List the folder again; the panel's checkpoint list follows")
        self.refresh_button.clicked.connect(self.refresh_all)
        self.add_button = QPushButton("Add model or backbone…")
        self.add_button.setToolTip(
            "Put a file into the model folder: a SpectralX checkpoint (with its backbone "
            "when it sits beside it) or backbone file is linked or copied in; a "
            "foundation-model release (Scale-MAE, SatMAE++, DINOv3, MAE, timm: "
            ".pth/.pt/.safetensors) is imported once as a SpectralX backbone"
        )
        self.add_button.clicked.connect(lambda: self.add_file())
        for b in (self.open_button, self.refresh_button, self.add_button):
            top.addWidget(b)
        lay.addLayout(top)

        self.models_table = self._table(MODEL_COLUMNS)
        # long texts are cut (the tooltip has them all) so the numbers stay in view
        self._fixed_width(self.models_table, MODEL_COLUMNS.index("Backbone"), 300)
        self._fixed_width(self.models_table, MODEL_COLUMNS.index("Classes"), 220)
        lay.addWidget(self.models_table, 3)

        lay.addWidget(
            QLabel("<b>Known foundation-model releases</b> (read exactly as published; nothing in " "them is executed)")
        )
        self.releases_table = self._table(RELEASE_COLUMNS)
        self.releases_table.itemSelectionChanged.connect(self._release_selected)
        self._fixed_width(self.releases_table, RELEASE_COLUMNS.index("Release"), 330)
        self._fixed_width(self.releases_table, RELEASE_COLUMNS.index("Licence"), 240)
        lay.addWidget(self.releases_table, 2)
        self.release_info = QLabel()
        self.release_info.setWordWrap(True)
        self.release_info.setTextFormat(Qt.TextFormat.RichText)
        self.release_info.setOpenExternalLinks(True)
        lay.addWidget(self.release_info)

        row = QHBoxLayout()
        self.download_button = QPushButton("Download and import")
        self.download_button.clicked.connect(lambda: self.download_release())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.progress, 1)
        lay.addLayout(row)
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # messages quote file names and server text
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.status)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

        self._fill_releases()
        self.refresh()
        self._set_busy(False)
        if self.catalog_error:
            self.set_status(self.catalog_error, error=True)

    # -- widgets ------------------------------------------------------------------------------------

    def _table(self, columns: List[str]) -> QTableWidget:
        t = QTableWidget(0, len(columns))
        t.setHorizontalHeaderLabels(columns)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)
        return t

    @staticmethod
    def _fixed_width(table: QTableWidget, col: int, width: int) -> None:
        table.horizontalHeader().setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
        table.setColumnWidth(col, width)

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00020;" if error else "")

    def _set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.add_button.setEnabled(not busy)
        release = self.selected_release()
        self.download_button.setEnabled(not busy and release is not None and release.downloadable)
        if not busy:
            self.progress.setValue(0)

    # -- the model folder -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """List the folder again (backbone digests come from the folder's cache when unchanged)."""
        self.folder_label.setText(f"Model folder: {self.folder}")
        self.entries = model_store.list_models(self.folder)
        t = self.models_table
        t.setRowCount(0)
        for e in self.entries:
            r = t.rowCount()
            t.insertRow(r)
            cells = self._model_cells(e)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.ToolTipRole, self._model_tooltip(e))
                if e.kind in ("damaged", "unknown", "release"):
                    item.setForeground(QBrush(_WARN if e.kind == "damaged" else _DIM))
                t.setItem(r, c, item)
            if e.kind == "checkpoint" and e.backbone_status not in ("ok", "none"):
                flag = t.item(r, MODEL_COLUMNS.index("Backbone"))
                flag.setForeground(QBrush(_WARN))
                font = QFont(flag.font())
                font.setBold(True)
                flag.setFont(font)
                flag.setData(Qt.ItemDataRole.ToolTipRole, self._backbone_tooltip(e))
            if e.kind not in ("checkpoint", "backbone"):  # the reason, across the detail columns
                t.setSpan(r, 2, 1, len(MODEL_COLUMNS) - 3)
        if not self.entries:
            self.set_status(
                f"No models in {self.folder} yet: add a backbone from a release file, download "
                "a release below, or fine-tune a model into this folder."
            )

    def refresh_all(self) -> None:
        """The Refresh button: a fresh listing without the messages of earlier actions, and the panel's
        checkpoint list refilled (files added or removed outside QGIS)."""
        self.set_status(self.catalog_error, error=bool(self.catalog_error))
        self.refresh()
        self.modelsChanged.emit()

    def _model_cells(self, e: model_store.ModelEntry) -> List[str]:
        size = model_store.human_size(e.size)
        if e.kind == "checkpoint":
            classes = ", ".join(e.classes)
            return [
                e.name,
                f"checkpoint ({e.stage})" if e.stage else "checkpoint",
                e.backbone_text(),
                e.sensor or "",
                str(e.bands or ""),
                f"{len(e.classes)}: {classes}",
                str(e.tile or ""),
                _miou(e.val_miou),
                _miou(e.forest_miou),
                e.method,
                size,
            ]
        if e.kind == "backbone":
            shape = f"{e.preset}: width {e.embed_dim}, {e.depth} blocks" if e.embed_dim else e.preset
            kind = "backbone" + (f" ({e.family})" if e.family else "")
            return [e.name, kind, shape, "", "", "", str(e.tile or ""), "", "", "", size]
        return [e.name, e.kind, e.error] + [""] * (len(MODEL_COLUMNS) - 4) + [size]

    def _model_tooltip(self, e: model_store.ModelEntry) -> str:
        lines = [e.path]
        if e.description:
            lines.append(e.description[:600])
        if e.classes:
            lines.append("classes: " + ", ".join(e.classes))
        if e.kind == "backbone" and e.sha256:
            lines.append(f"sha256 {e.sha256}")
        if e.license:
            lines.append(f"licence: {e.license}")
        if e.error:
            lines.append(e.error)
        return "\n".join(lines)

    def _backbone_tooltip(self, e: model_store.ModelEntry) -> str:
        if e.backbone_status == "mismatch":
            return (
                f"{e.backbone_path} is not the backbone this model was trained with (its sha256 differs "
                f"from {e.backbone_expected_sha256[:16]}…); put the right file there"
            )
        return (
            f"Backbone {e.backbone_file} not found; looked in:\n"
            + "\n".join(e.backbone_searched)
            + "\nAdd it with 'Add model or backbone…' (import its release under this name) or copy it "
            "beside the checkpoint."
        )

    def open_folder(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.folder))

    # -- releases -------------------------------------------------------------------------------------

    def _fill_releases(self) -> None:
        t = self.releases_table
        t.setRowCount(0)
        for rel in self.releases:
            r = t.rowCount()
            t.insertRow(r)
            size = model_store.human_size(rel.size) if rel.size else ""
            for c, text in enumerate([rel.name, rel.family, rel.license, size, rel.access_text(), ""]):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.ToolTipRole, f"{rel.file}\n{rel.checksum_text()}\n{rel.notes}")
                t.setItem(r, c, item)
            link = QLabel(f'<a href="{html.escape(rel.source_page)}">{html.escape(rel.source_page)}</a>')
            link.setOpenExternalLinks(True)
            t.setCellWidget(r, RELEASE_COLUMNS.index("Source page"), link)
        if self.releases:
            t.selectRow(0)

    def selected_release(self) -> Optional[model_catalog.Release]:
        rows = {i.row() for i in self.releases_table.selectedItems()}
        return self.releases[min(rows)] if rows else None

    def _release_selected(self) -> None:
        rel = self.selected_release()
        if rel is None:
            self.release_info.setText("")
        else:

            def link(url, text):
                return f'<a href="{html.escape(url)}">{html.escape(text)}</a>'

            parts = [
                f"<b>{html.escape(rel.name)}</b>: <code>{html.escape(rel.file)}</code>",
                "licence " + (link(rel.license_url, rel.license) if rel.license_url else html.escape(rel.license)),
                html.escape(rel.checksum_text()),
            ]
            if not rel.downloadable:
                parts.append(
                    "No direct download: get the file from "
                    + link(rel.source_page, "its source page")
                    + ", then use 'Add model or backbone…'."
                )
            if rel.notes:
                parts.append(html.escape(rel.notes))
            self.release_info.setText("<br>".join(parts))
        self._set_busy(self.task is not None)

    def download_release(self, release: Optional[model_catalog.Release] = None) -> Optional[QgsTask]:
        """Download (resuming a kept part) into <folder>/releases, then import it into the folder."""
        release = release or self.selected_release()
        if release is None or self.task is not None:
            return None
        if not release.downloadable:
            self.set_status(
                f"{release.name} has no direct download: get it from {release.source_page}, then "
                "use 'Add model or backbone…'."
            )
            return None
        dest = os.path.join(self.folder, RELEASES_SUBFOLDER, release.file)
        if os.path.isfile(dest):  # downloaded before (an earlier import may have failed)
            self.set_status(f"{release.file} is already downloaded; importing it")
            return self.add_backbone(dest, family=release.family)
        part = download.part_path(dest)
        kept = os.path.getsize(part) if os.path.isfile(part) else 0
        task = DownloadTask(release, dest, qgis_proxy_url(), self._download_done)
        task.progressed.connect(self._download_progress)
        self.set_status(
            f"Downloading {release.file}" + (f", resuming after {model_store.human_size(kept)}" if kept else "") + "…"
        )
        return self._start(task)

    def _download_progress(self, done, total) -> None:
        if total:
            self.progress.setValue(int(100 * done / total))
        self.set_status(
            f"Downloading {os.path.basename(getattr(self.task, 'dest', ''))}: "
            f"{model_store.human_size(done)}" + (f" of {model_store.human_size(total)}" if total else "")
        )

    def _download_done(self, task: DownloadTask) -> None:
        self._finish(task)
        outcome = task.outcome
        if not isinstance(outcome, Done):
            if isinstance(outcome, Cancelled):
                self.set_status(f"{outcome.message}. 'Download and import' resumes it.")
            else:
                self.set_status(outcome.message if isinstance(outcome, Failed) else "the download failed", error=True)
            self.taskFinished.emit(task)
            return
        res = outcome.value
        ok, why = task.release.check(sha256=res.sha256, md5=res.md5)
        if ok is False:  # a published md5/sha256 prefix that does not match
            os.remove(res.path)
            self.set_status(f"{task.release.file}: {why}; the download was deleted, try again", error=True)
            self.taskFinished.emit(task)
            return
        self._download_note = (
            f"Downloaded {task.release.file} ({model_store.human_size(res.size)}, sha256 "
            f"{res.sha256}{'; ' + why if ok else ''})."
        )
        self.set_status(self._download_note)
        self.taskFinished.emit(task)
        self.add_backbone(res.path, family=task.release.family)

    # -- import ---------------------------------------------------------------------------------------

    def import_destination(self, source: str) -> Optional[str]:
        """<folder>/<release name>.safetensors (-backbone added when that is the source itself);
        None when that import already exists (the same release is imported once)."""
        stem = os.path.splitext(os.path.basename(source))[0]
        dest = os.path.join(self.folder, f"{stem}.safetensors")
        if os.path.abspath(dest) == os.path.abspath(source):
            dest = os.path.join(self.folder, f"{stem}-backbone.safetensors")
        return None if os.path.exists(dest) else dest

    def add_file(self, path: Optional[str] = None) -> Optional[QgsTask]:
        """Add any usable file: a SpectralX checkpoint or backbone is linked or copied in (a checkpoint
        with the backbone beside it), a release is imported. Bad files: one line, nothing written."""
        if self.task is not None:
            return None
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Add a model or backbone to the model folder",
                "",
                "Models and releases (*.safetensors *.pth *.pt *.ckpt *.bin);;All files (*)",
            )
            if not path:
                return None
        if not os.path.isfile(path):
            self.set_status(f"{path} is not a file: choose the model's .safetensors file", error=True)
            return None
        entry = model_store.describe_file(path)
        if model_add.is_release(entry):
            return self.add_backbone(path)
        try:
            plan = model_add.plan(path, self.folder, entry)
            os.makedirs(self.folder, exist_ok=True)
        except model_add.AddError as exc:
            self.set_status(str(exc), error=True)
            return None
        except OSError as exc:
            self.set_status(f"cannot create the model folder {self.folder}: {exc.strerror or exc}", error=True)
            return None
        self.set_status(f"Adding {os.path.basename(path)}…")
        return self._start(CopyTask(plan, self._copy_done))

    def _copy_done(self, task: CopyTask) -> None:
        self._finish(task)
        if isinstance(task.outcome, Done):
            names = [os.path.basename(d) for _s, d in task.plan.files]
            what = names[-1] + (f" with its backbone {names[0]}" if len(names) > 1 else "")
            how = "linked" if set(task.outcome.value) == {"linked"} else "copied"
            self.set_status(
                f"Added {what} ({task.plan.kind}, {how} into the model folder)"
                + (f"; {task.plan.note}" if task.plan.note else ""),
                error=bool(task.plan.note),
            )
            self.refresh()
            self.modelsChanged.emit()
        else:
            self.set_status(task.outcome.message, error=not isinstance(task.outcome, Cancelled))
        self.taskFinished.emit(task)

    def add_backbone(self, path: Optional[str] = None, family: str = "auto") -> Optional[QgsTask]:
        """Import a release file into the model folder with the engine's importer (in a QgsTask); a
        file that already is a SpectralX checkpoint or backbone is added as it is (add_file)."""
        if self.task is not None:
            return None
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Add a backbone from a release file",
                "",
                "Weights (*.pth *.pt *.ckpt *.bin *.safetensors);;All files (*)",
            )
            if not path:
                return None
        if os.path.isfile(path) and model_store.describe_file(path).kind in ("checkpoint", "backbone"):
            return self.add_file(path)
        try:
            deps.require()
        except deps.MissingDependencies:
            self.set_status(
                "Importing a backbone needs PyTorch and the other SpectralX dependencies, which "
                "this QGIS does not have yet: install the dependencies first (SpectralX panel), "
                "then add the backbone again.",
                error=True,
            )
            return None
        dest = self.import_destination(path)
        if dest is None:
            self.set_status(
                f"{os.path.basename(path)} is already imported in {self.folder} (remove the "
                "existing file to import it again)",
                error=True,
            )
            return None
        os.makedirs(self.folder, exist_ok=True)
        self.set_status(
            f"{self._download_note} Importing {os.path.basename(path)} (reading the release, keeping "
            "the encoder)…".strip()
        )
        self.progress.setRange(0, 0)  # the importer reports no progress: a busy bar
        return self._start(ImportTask(path, dest, family, self._import_done))

    def _import_done(self, task: ImportTask) -> None:
        self.progress.setRange(0, 100)
        self._finish(task)
        if isinstance(task.outcome, Done):
            res = task.outcome.value
            src_sha = (res.metadata.get("source") or {}).get("sha256")
            release = model_catalog.by_file(self.releases, task.source)
            ok, why = release.check(sha256=src_sha) if release else (None, "")
            note = f"; {why}" if ok is not None else ""
            c = res.config
            added = (
                f"Added {os.path.basename(res.path)}: {res.family}, {res.preset} (width {c.embed_dim}, "
                f"{c.depth} blocks), licence {res.metadata.get('license', '?')}{note}"
            )
            self.set_status(f"{self._download_note} {added}".strip(), error=ok is False)
            self._download_note = ""
            self.refresh()
            self.modelsChanged.emit()
        elif isinstance(task.outcome, Cancelled):
            self.set_status(f"{self._download_note} Import cancelled; nothing was added".strip())
        else:
            self.set_status(
                f"{self._download_note} Import of {os.path.basename(task.source)} failed: "
                f"{task.outcome.message}".strip(),
                error=True,
            )
        self._download_note = ""
        self.taskFinished.emit(task)

    # -- tasks ----------------------------------------------------------------------------------------

    def _start(self, task: QgsTask) -> QgsTask:
        self.task = task
        self._set_busy(True)
        QgsApplication.taskManager().addTask(task)
        return task

    def _finish(self, task: QgsTask) -> None:
        self.last_task = task
        self.task = None
        self._set_busy(False)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def reject(self):
        self.cancel()  # a download keeps its part for a resume; an import drops its output
        super().reject()
