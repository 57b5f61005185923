"""What the user's model folder holds: checkpoints, backbones and release files, read without torch.

The model manager and the dock's checkpoint picker list the folder while QGIS may not have PyTorch
yet, so nothing here imports Qt or torch: the safetensors header reader, the card key, the model
folder and the order a checkpoint's backbone is looked for in are the engine's torch-free contract's
(spectralx.contract: card, model_folder). A damaged file is listed with its one-line reason instead
of breaking the listing. The backbone metadata key mirrors engine/backbone_io.py (checked by
tests/test_model_store.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .._vendor.spectralx.contract import card as model_card
from .._vendor.spectralx.contract import errors, model_folder

CARD_KEY = model_card.CARD_KEY  # the model card's key in the safetensors metadata
CARD_FORMAT = model_card.FORMAT_NAME
BACKBONE_KEY = "spectralx_backbone"  # engine/backbone_io.py BACKBONE_META_KEY
DIGEST_CACHE = ".spectralx-digests.json"  # sha256 per (path, size, mtime_ns), in the model folder
RELEASE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class ModelFileError(Exception):
    """A file in the model folder cannot be read as what it claims to be (one line)."""


# the engine's model folder and backbone search order (the contract's, one implementation)
user_model_dir = model_folder.user_model_dir
backbone_candidates = model_folder.backbone_candidates


def file_header(path: str) -> dict:
    """The JSON header of a safetensors file (the contract's reader); ModelFileError, one line naming
    the file, for anything else."""
    try:
        return model_card.read_header(path)
    except errors.CheckpointError as exc:
        raise ModelFileError(_reason(str(exc).replace(path, "").strip().lstrip(":").strip())) from None
    except OSError as exc:
        raise ModelFileError(f"cannot read: {exc.strerror or exc}") from None


def _reason(text: str) -> str:
    """The contract's line without the file's path, in the listing's words ("damaged …", "truncated …")."""
    invalid = re.match(r"is not a valid safetensors file \((.*)\)$", text)
    if invalid:
        why = invalid.group(1)
        return (why if why.startswith("damaged") else f"damaged: {why}") + " (not a valid safetensors file)"
    if text.startswith("is truncated"):
        return "truncated" + text[len("is truncated") :]
    return "damaged: " + (text[3:] if text.startswith("is ") else text)


# -- sha256, cached -------------------------------------------------------------------------------


class DigestCache:
    """sha256 of files keyed by (absolute path, size, mtime_ns), kept in a small JSON file in the model
    folder, so listing a folder with a 1 GB backbone hashes it once, not on every refresh."""

    def __init__(self, folder: Optional[str]):
        self.path = os.path.join(folder, DIGEST_CACHE) if folder else None
        self.entries: Dict[str, dict] = {}
        self.hashed: List[str] = []  # files hashed (not found in the cache) since loading
        self._dirty = False
        if self.path and os.path.isfile(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                if isinstance(data, dict):
                    self.entries = {k: v for k, v in data.items() if isinstance(v, dict)}
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache is rebuilt, never trusted

    def sha256(self, path: str) -> str:
        path = os.path.abspath(path)
        st = os.stat(path)
        e = self.entries.get(path)
        if (
            e
            and e.get("size") == st.st_size
            and e.get("mtime_ns") == st.st_mtime_ns
            and isinstance(e.get("sha256"), str)
        ):
            return e["sha256"]
        digest = sha256_of(path)
        self.entries[path] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self.hashed.append(path)
        self._dirty = True
        return digest

    def save(self) -> None:
        """Atomically (temporary file + rename); a read-only folder just keeps no cache."""
        if not (self.path and os.path.isdir(os.path.dirname(self.path))):
            return
        # entries of files that are gone would otherwise accumulate forever
        live = {k: v for k, v in self.entries.items() if os.path.isfile(k)}
        if not self._dirty and len(live) == len(self.entries):
            return
        try:
            fd, tmp = tempfile.mkstemp(prefix=".digests-", suffix=".tmp", dir=os.path.dirname(self.path))
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(live, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise
        except OSError:
            return
        self.entries = live
        self._dirty = False


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# -- listing --------------------------------------------------------------------------------------


@dataclass
class ModelEntry:
    """One file of the model folder, as the manager's table shows it."""

    path: str
    kind: str  # checkpoint | backbone | release | unknown | damaged
    size: int
    name: str = ""
    error: str = ""  # why a damaged/unknown file cannot be used
    description: str = ""
    # checkpoints
    sensor: Optional[str] = None
    bands: Optional[int] = None
    classes: List[str] = field(default_factory=list)
    tile: Optional[int] = None
    gsd_m: Optional[float] = None
    stage: str = ""
    method: str = ""
    val_miou: Optional[float] = None
    forest_miou: Optional[float] = None  # random-forest baseline on the same validation pixels
    backbone_file: str = ""
    backbone_expected_sha256: str = ""
    backbone_path: Optional[str] = None  # where it was found (first existing candidate)
    backbone_status: str = ""  # ok | missing | mismatch | none (a forest needs none)
    backbone_searched: List[str] = field(default_factory=list)
    # backbones
    family: str = ""
    preset: str = ""
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    license: str = ""
    sha256: Optional[str] = None

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    def backbone_text(self) -> str:
        """The backbone column: present/missing in words a user can act on."""
        if self.kind != "checkpoint":
            return ""
        if self.backbone_status == "none":
            return "none needed (random forest)"
        if self.backbone_status == "ok":
            return f"present: {self.backbone_file}"
        if self.backbone_status == "mismatch":
            return f"WRONG FILE (sha256 differs): {self.backbone_file}"
        return f"MISSING: {self.backbone_file}"


def _number(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def sensor_text(sensor: Any, bands: Any) -> str:
    """The Sensor column: the sensor the model was trained with, else (a card that records none, such
    as the demo model's) what its bands cover, so the column is never empty for a checkpoint."""
    if isinstance(sensor, str) and sensor.strip():
        sensor = sensor.strip()  # a preset, or a preset with a band list (`enmap:B1,B2,…`)
        return sensor if len(sensor) <= 40 else sensor[:39] + "…"
    if not isinstance(bands, list) or not bands:
        return "bands unknown"
    waves = [w for w in (_number(b.get("wavelength_nm")) for b in bands if isinstance(b, dict)) if w]
    if not waves:
        return f"{len(bands)} bands"
    return f"{len(bands)} bands, {min(waves):.0f}-{max(waves):.0f} nm"


def _checkpoint_entry(e: ModelEntry, text: str, digests: Optional[DigestCache]) -> None:
    try:
        card = json.loads(text)
    except ValueError:
        e.kind, e.error = "damaged", "its model card is not valid JSON"
        return
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        e.kind, e.error = "damaged", "its model card is not a SpectralX model card"
        return
    arch = card.get("architecture") if isinstance(card.get("architecture"), dict) else {}
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    forest = (
        ((metrics.get("baselines") or {}).get("random_forest") or {})
        if isinstance(metrics.get("baselines"), dict)
        else {}
    )
    bands = card.get("bands")
    classes = card.get("classes")
    e.bands = len(bands) if isinstance(bands, list) else None
    e.classes = (
        [str(c.get("name", c.get("value", "?"))) for c in classes if isinstance(c, dict)]
        if isinstance(classes, list)
        else []
    )
    tile = card.get("tile_size", arch.get("img_size"))
    e.tile = int(tile) if _number(tile) is not None else None
    e.gsd_m = _number(card.get("gsd_m"))
    e.sensor = sensor_text(training.get("sensor"), bands)
    e.stage = str(card.get("stage") or "")
    e.method = str(training.get("method") or arch.get("method") or "")
    e.val_miou = _number(metrics.get("val_miou"))
    e.forest_miou = _number(forest.get("val_miou")) if isinstance(forest, dict) else None
    e.description = str(card.get("description") or "")
    ref = card.get("backbone") if isinstance(card.get("backbone"), dict) else {}
    if arch.get("method") == "forest":  # a random-forest checkpoint: nothing to look for
        e.backbone_status = "none"
        return
    e.backbone_file = os.path.basename(str(ref.get("file") or ""))
    e.backbone_expected_sha256 = str(ref.get("sha256") or "")
    e.backbone_searched = backbone_candidates(card, e.path)
    e.backbone_path = next((c for c in e.backbone_searched if os.path.isfile(c)), None)
    if e.backbone_path is None:
        e.backbone_status = "missing"
    elif digests is None:
        e.backbone_status = "ok"  # present; its digest is checked when the model loads
    else:
        try:
            same = digests.sha256(e.backbone_path) == e.backbone_expected_sha256
        except OSError:
            same = False
        e.backbone_status = "ok" if same else "mismatch"


def _backbone_entry(e: ModelEntry, text: str, digests: Optional[DigestCache]) -> None:
    try:
        meta = json.loads(text)
    except ValueError:
        e.kind, e.error = "damaged", "its backbone description is not valid JSON"
        return
    if not isinstance(meta, dict):
        e.kind, e.error = "damaged", "its backbone description is not a JSON object"
        return
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    e.description = str(meta.get("description") or "")
    # files written before `backbone import` existed (the demo MAE) record no family
    e.family = str(meta.get("family") or ("spectralx-mae" if "pretrain-backbone" in e.description else ""))
    e.preset = str(meta.get("preset") or cfg.get("backbone_preset") or "")
    e.embed_dim = int(cfg["embed_dim"]) if _number(cfg.get("embed_dim")) is not None else None
    e.depth = int(cfg["depth"]) if _number(cfg.get("depth")) is not None else None
    e.tile = int(cfg["img_size"]) if _number(cfg.get("img_size")) is not None else None
    e.license = str(meta.get("license") or "")
    if digests is not None:
        try:
            e.sha256 = digests.sha256(e.path)
        except OSError as exc:
            e.kind, e.error = "damaged", f"cannot read: {exc.strerror or exc}"


def describe_file(path: str, digests: Optional[DigestCache] = None) -> ModelEntry:
    """One file as a ModelEntry; never raises for a bad file (its reason goes into `error`)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    e = ModelEntry(
        path=os.path.abspath(path), kind="unknown", size=size, name=os.path.splitext(os.path.basename(path))[0]
    )
    if path.lower().endswith(RELEASE_SUFFIXES):
        e.kind = "release"
        e.error = "a release file, not yet usable: import it (Add model or backbone…)"
        return e
    try:
        header = file_header(path)
    except ModelFileError as exc:
        e.kind, e.error = "damaged", str(exc)
        return e
    meta = header.get("__metadata__") if isinstance(header.get("__metadata__"), dict) else {}
    if CARD_KEY in meta:
        e.kind = "checkpoint"
        _checkpoint_entry(e, str(meta[CARD_KEY]), digests)
    elif BACKBONE_KEY in meta:
        e.kind = "backbone"
        _backbone_entry(e, str(meta[BACKBONE_KEY]), digests)
    else:
        e.error = (
            "safetensors weights without SpectralX metadata (another tool's file or a release): "
            "import it as a backbone (Add model or backbone…)"
        )
    return e


def _files(folder: str, suffixes) -> List[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [
        os.path.join(folder, n)
        for n in names
        if not n.startswith(".") and n.lower().endswith(suffixes) and os.path.isfile(os.path.join(folder, n))
    ]


def list_models(folder: Optional[str] = None, verify: bool = True) -> List[ModelEntry]:
    """Every .safetensors (and release .pth/.pt/.ckpt/.bin) file directly in the model folder:
    checkpoints first, then backbones, releases and files that cannot be used. `verify` checks each
    checkpoint's backbone against the sha256 its card names (digests cached in the folder)."""
    folder = folder or user_model_dir()
    digests = DigestCache(folder) if verify else None
    entries = [describe_file(p, digests) for p in _files(folder, (".safetensors",) + RELEASE_SUFFIXES)]
    if digests is not None:
        digests.save()
    order = {"checkpoint": 0, "backbone": 1, "release": 2, "unknown": 3, "damaged": 4}
    return sorted(entries, key=lambda e: (order.get(e.kind, 9), e.file_name.lower()))


def checkpoint_paths(folder: Optional[str] = None) -> List[str]:
    """Checkpoints of the model folder for the dock's picker: cheap (headers only, no hashing)."""
    folder = folder or user_model_dir()
    out = []
    for p in _files(folder, (".safetensors",)):
        try:
            meta = file_header(p).get("__metadata__") or {}
        except ModelFileError:
            continue
        if isinstance(meta, dict) and CARD_KEY in meta:
            out.append(os.path.abspath(p))
    return out


def human_size(n: Optional[int]) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
