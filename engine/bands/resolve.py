"""One entry point for CLI, Processing and the dock: raster + checkpoint + user's choice -> BandMapping."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from ..contract.card import read_card
from ..errors import BandMappingError
from .detect import detect_bands
from .fit import detect_bands_for_card, plan_bands  # noqa: F401 (detect_bands_for_card: re-export)
from .mapping import STRATEGIES, BandMapping, map_bands
from .units import parse_number
from .wording import Advice

MAX_BAND_MAP_BYTES = 16 * 2**20  # a 224 x 224-band map with every weight written is about 1 MiB


def _load_card(card):
    """(card, its bands) from a ModelCard, a checkpoint path, or a plain list of Band-like objects."""
    if isinstance(card, (str, os.PathLike)):
        card = read_card(os.fspath(card))
    bands = getattr(card, "bands", card)
    if not bands:
        raise BandMappingError("the checkpoint lists no input bands")
    return card, list(bands)


def _load_band_map(band_map: Union[str, os.PathLike]) -> Any:
    path = os.fspath(band_map)
    if not os.path.isfile(path):
        raise BandMappingError(f"band map '{path}' is neither a file nor one of: {', '.join(STRATEGIES)}")
    if os.path.getsize(path) > MAX_BAND_MAP_BYTES:
        raise BandMappingError(
            f"band map {path} is {os.path.getsize(path) // 2 ** 20} MiB; a band map is a few "
            "KiB (even for 224 bands), so this is not one"
        )
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Advice(f"cannot read band map {path} ({exc}); write one with [[write_band_map]]") from None
    except RecursionError:
        raise Advice(
            f"cannot read band map {path} (nested too deeply to be a band map); write one with " "[[write_band_map]]"
        ) from None


def _explicit_indexes(doc: Any, targets: list) -> Optional[List[Optional[int]]]:
    """Hand-written forms: [3, 2, 1, null], {"bands": [...]}, {"indexes": [...]} or
    {"<checkpoint band name>": raster band number or null, ...}."""
    if isinstance(doc, dict):
        for key in ("indexes", "bands"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
    if isinstance(doc, list):
        if doc and all(isinstance(v, dict) and "wavelength_nm" in v for v in doc):
            raise Advice(
                "this is `spectralx bands` detection output, not a band map; "
                "write a band map with [[write_band_map]]"
            )
        _check_numbers(doc)
        return list(doc)
    if isinstance(doc, dict) and doc and "rows" not in doc and "weights" not in doc:
        names = [t.name for t in targets]
        unknown = [k for k in doc if k not in names]
        if unknown:
            raise BandMappingError(
                f"band map names {_few(unknown)}, which are not checkpoint bands " f"({_few(names)})"
            )
        missing = [n for n in names if n not in doc]
        if missing:
            raise BandMappingError(f"band map gives no raster band for {_few(missing)}; add them (null to fill)")
        return _check_numbers([doc[n] for n in names])
    return None


def _few(items: Sequence, n: int = 6) -> str:
    """A few names of a long list, each cut short and without control characters (one short line)."""

    def one(x):
        text = "".join(c if c.isprintable() else "?" for c in str(x))
        return text if len(text) <= 30 else text[:29] + "…"

    shown = ", ".join(one(x) for x in list(items)[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _check_numbers(values: list) -> list:
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
        raise BandMappingError(
            "a hand-written band map gives one raster band number (1-based) or null "
            "per checkpoint band, e.g. [3, 2, 1]"
        )
    return values


def validate_mapping(
    mapping: BandMapping, raster_band_count: int, targets: Sequence, source: str = "band map"
) -> BandMapping:
    """Check a stored mapping against this raster and checkpoint: clear errors instead of wrong input."""
    if len(mapping.rows) != len(targets):
        raise Advice(
            f"{source} maps {len(mapping.rows)} bands but the checkpoint expects {len(targets)}; "
            "make a new one for this checkpoint with [[write_band_map]]"
        )
    too_high = [i for i in mapping.source_indexes if i > raster_band_count]
    if too_high:
        raise BandMappingError(
            f"{source} reads raster band(s) {_few(too_high)} but the raster has "
            f"{raster_band_count} bands; was it made for another raster?"
        )
    if mapping.raster_band_count and mapping.raster_band_count != raster_band_count:
        # band positions of another layout: the bands read would be other wavelengths
        raise Advice(
            f"{source} was made for a {mapping.raster_band_count}-band raster but this one has "
            f"{raster_band_count} bands; make one for this raster with [[write_band_map]]"
        )
    for row, t in zip(mapping.rows, targets):
        wl = parse_number(row.get("target_wavelength_nm"))
        if row.get("target") not in (None, t.name) or (
            wl is not None and t.wavelength_nm is not None and abs(wl - t.wavelength_nm) > 1.0
        ):
            raise BandMappingError(
                f"{source} row '{_few([row.get('target')])}' ({wl} nm) does not match checkpoint band "
                f"'{t.name}' ({t.wavelength_nm} nm); make a new one for this checkpoint"
            )
    return mapping


def _band_count(path: str) -> int:
    from ..raster_io import open_raster

    with open_raster(path) as ds:
        return ds.count


def resolve_band_map(
    raster_path: str,
    card,
    band_map: Union[str, os.PathLike, Dict, list, BandMapping, None] = "auto",
    sensor: Optional[str] = None,
    *,
    tolerance_nm: Optional[float] = None,
    allow_fill: bool = False,
) -> BandMapping:
    """The mapping for `raster_path` onto `card`'s bands. `band_map`: "auto" (or another strategy
    name), a JSON file path, a dict/list (a saved mapping or the hand-written index forms), or a
    BandMapping. `card`: a ModelCard, a checkpoint path or a list of Band."""
    card, targets = _load_card(card)
    band_map = "auto" if band_map is None else band_map
    if isinstance(band_map, BandMapping):
        return validate_mapping(band_map, _band_count(raster_path), targets)
    if isinstance(band_map, str) and band_map in STRATEGIES:
        plan = plan_bands(
            raster_path, card, sensor, strategy=band_map, tolerance_nm=tolerance_nm, allow_fill=allow_fill
        )
        if plan.error is not None:
            raise plan.error
        return plan.mapping
    source = "band map"
    doc = band_map
    if isinstance(band_map, (str, os.PathLike)):
        source, doc = os.fspath(band_map), _load_band_map(band_map)
    indexes = _explicit_indexes(doc, targets)
    if indexes is not None:
        raster_bands = detect_bands(raster_path, sensor=sensor)
        return map_bands(
            raster_bands,
            targets,
            strategy="index",
            tolerance_nm=tolerance_nm,
            allow_fill=True,
            indexes=indexes,
            sensor=sensor,
        )
    if not isinstance(doc, dict):
        raise BandMappingError(f"{source} must be a JSON object or list, got {type(doc).__name__}")
    mapping = BandMapping.from_json(doc, source=source)
    return validate_mapping(mapping, _band_count(raster_path), targets, source)
