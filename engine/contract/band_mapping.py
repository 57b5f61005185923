"""The one band-mapping type: how a raster's bands feed a checkpoint's input bands, as a weight
matrix (x_checkpoint = weights @ x_read) with one row of provenance per checkpoint band, and its JSON
file format (`spectralx bands -o`, the dock's Save band map…). Building a mapping from band centres
is spectralx.bands.mapping's work; this module holds only the type. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .errors import BandMappingError

__all__ = ["BandMapping", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "spectralx-band-map"
FORMAT_VERSION = 1


@dataclass
class BandMapping:
    source_indexes: List[int]  # 1-based raster bands to read, sorted, unique
    weights: np.ndarray  # (n_checkpoint_bands, len(source_indexes)) float32
    fill: List[bool]  # True: band is filled with the normalization mean
    rows: List[Dict[str, Any]]  # per checkpoint band: target, strategy, sources, quality, note
    raster_band_count: Optional[int] = None
    sensor: Optional[str] = None
    strategy: str = "auto"
    warnings: List[str] = field(default_factory=list)

    @classmethod
    def identity(
        cls,
        source_indexes: Sequence[int],
        names: Optional[Sequence[str]] = None,
        raster_band_count: Optional[int] = None,
        sensor: Optional[str] = None,
    ) -> "BandMapping":
        """Raster band source_indexes[i] feeds checkpoint band i unchanged (a new model's own bands)."""
        idx = [int(i) for i in source_indexes]
        names = list(names) if names is not None else [f"band {i}" for i in idx]
        rows = [
            {
                "target": n,
                "strategy": "identity",
                "sources": [{"index": i, "weight": 1.0}],
                "quality": 1.0,
                "note": "the model's own band",
            }
            for n, i in zip(names, idx)
        ]
        return cls(
            idx, np.eye(len(idx), dtype=np.float32), [False] * len(idx), rows, raster_band_count, sensor, "identity"
        )

    def __post_init__(self):
        self.weights = np.asarray(self.weights, dtype=np.float32).reshape(len(self.fill), len(self.source_indexes))

    @property
    def quality(self) -> float:
        """The weakest band's quality: one number for a status line."""
        return min((float(r.get("quality", 0.0)) for r in self.rows), default=0.0)

    def apply(self, x: np.ndarray, fill_values: Optional[Sequence[float]] = None) -> np.ndarray:
        """(len(source_indexes), …) raster values -> (n_checkpoint_bands, …); filled bands get
        `fill_values` (the normalization mean) or 0."""
        x = np.asarray(x)
        out = np.tensordot(self.weights, x.astype(np.float32, copy=False), axes=(1, 0))
        if fill_values is not None:
            for i, f in enumerate(self.fill):
                if f:
                    out[i] = fill_values[i]
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "raster_band_count": self.raster_band_count,
            "sensor": self.sensor,
            "strategy": self.strategy,
            "source_indexes": [int(i) for i in self.source_indexes],
            "weights": [[round(float(w), 7) for w in row] for row in self.weights],
            "fill": [bool(f) for f in self.fill],
            "rows": self.rows,
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: Union[str, bytes, Dict[str, Any]], source: str = "band map") -> "BandMapping":
        if isinstance(text, dict):
            d = text
        else:
            try:
                d = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BandMappingError(
                    f"{source} is not valid JSON ({exc}); write it with `spectralx bands -o`"
                ) from None
            except RecursionError:
                raise BandMappingError(
                    f"{source} is nested too deeply to be a band map; write it with " "`spectralx bands -o`"
                ) from None
        if not isinstance(d, dict) or "rows" not in d:
            raise BandMappingError(
                f"{source} is not a SpectralX band map (no 'rows'); write one with `spectralx bands -c CHECKPOINT -o`"
            )
        version = d.get("format_version", 1)
        if d.get("format", FORMAT_NAME) != FORMAT_NAME or not _whole(version) or version > FORMAT_VERSION:
            raise BandMappingError(
                f"{source}: unsupported band-map format {_short(d.get('format'))} "
                f"{_short(version)}; write it with `spectralx bands -o`"
            )
        _check_fields(d, source)
        rows = d["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BandMappingError(f"{source}: 'rows' must be a list of objects, one per checkpoint band")
        try:
            rows = [_normalise_row(r) for r in rows]
            if "weights" in d and "source_indexes" in d:
                idx = [_band_number(i) for i in d["source_indexes"]]
                w = np.asarray(d["weights"], dtype=np.float32)
                if not idx and w.size == 0:  # every band filled: JSON keeps no column shape
                    w = w.reshape(len(rows), 0)
                fill = [bool(f) for f in d.get("fill", [False] * len(rows))]
            else:  # hand-written: rebuild the matrix from each row's sources
                idx, w, fill = _matrix_from_rows(rows)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise BandMappingError(
                f"{source}: malformed band map ({_short(exc, 120)}); regenerate it with " "`spectralx bands -o`"
            ) from None
        if w.ndim != 2 or w.shape != (len(rows), len(idx)) or len(fill) != len(rows):
            raise BandMappingError(
                f"{source}: weights are {list(w.shape)} but there are {len(rows)} rows and "
                f"{len(idx)} source bands; regenerate it with `spectralx bands -o`"
            )
        if any(i < 1 for i in idx) or len(set(idx)) != len(idx):
            raise BandMappingError(
                f"{source}: source_indexes must be unique 1-based band numbers, got " f"{_short(idx, 80)}"
            )
        if not np.all(np.isfinite(w)):
            raise BandMappingError(f"{source}: weights contain NaN or infinity")
        # a checkpoint band is a weighted mean of raster bands: no negative weights, and a band that
        # is read (not filled) needs some weight, or it would silently be zero
        if np.any(w < 0):
            raise BandMappingError(
                f"{source}: weights must not be negative (a checkpoint band is a weighted mean "
                "of raster bands); regenerate it with `spectralx bands -o`"
            )
        empty = [
            rows[k].get("target", k + 1) for k, (f, row_w) in enumerate(zip(fill, w)) if not f and row_w.sum() <= 0
        ]
        if empty:
            raise BandMappingError(
                f"{source}: checkpoint band {_short(empty[0])} is neither filled nor given any "
                "weight; give it a raster band or set \"fill\": true"
            )
        # the matrix is authoritative; read only bands that feed something, in band order
        order = [j for j in np.argsort(idx, kind="stable") if np.any(w[:, j] != 0)]
        return cls(
            [idx[j] for j in order],
            w[:, order],
            fill,
            rows,
            d.get("raster_band_count"),
            d.get("sensor"),
            d.get("strategy", "auto"),
            list(d.get("warnings", [])),
        )


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _band_number(v: Any) -> int:
    """A 1-based band number: a whole number (5, or 5.0 as some JSON writers put it), never 1.5 -> 1."""
    if _whole(v):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise ValueError(f"band number {_short(v)} is not a whole number")


def _short(v: Any, limit: int = 40) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(v))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_fields(d: Dict[str, Any], source: str) -> None:
    """Types of the optional fields, so that a wrong one is named instead of failing later."""
    count = d.get("raster_band_count")
    if count is not None and (not _whole(count) or count < 1):
        raise BandMappingError(f"{source}: raster_band_count must be a whole number of bands, not {_short(count)}")
    warnings = d.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(x, str) for x in warnings):
        raise BandMappingError(f"{source}: 'warnings' must be a list of texts")
    for key in ("sensor", "strategy"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise BandMappingError(f"{source}: '{key}' must be a text, not {_short(d[key])}")


def _normalise_row(row: Dict[str, Any]) -> Dict[str, Any]:
    """Rows edited by hand or by the dock may list sources as bare band numbers: make them objects."""
    sources = row.get("sources") or []
    if all(isinstance(s, dict) for s in sources):
        return row
    return {
        **row,
        "sources": [
            s if isinstance(s, dict) else {"index": _band_number(s), "weight": 1.0 / len(sources)} for s in sources
        ],
    }


def _matrix_from_rows(rows):
    idx = sorted({_band_number(s["index"]) for r in rows for s in r.get("sources", [])})
    col = {i: k for k, i in enumerate(idx)}
    w = np.zeros((len(rows), len(idx)), np.float32)
    fill = []
    for r_i, r in enumerate(rows):
        for s in r.get("sources", []):
            w[r_i, col[_band_number(s["index"])]] += float(s.get("weight", 1.0))
        fill.append(bool(r.get("fill", not r.get("sources"))))
    return idx, w, fill
