"""Map raster bands onto a checkpoint's input bands as a weight matrix: x_checkpoint = weights @ x_read.

Each checkpoint band gets one row built by a strategy: `index` (position or an explicit raster band),
`nearest` (closest centre within a tolerance), `interpolate` (linear between the two neighbours),
`srf` (the target's Gaussian spectral response sampled at a finer sensor's band centres). `auto`
picks SRF when the raster samples the target band finely, nearest when a band lies within tolerance,
interpolation otherwise. Bad bands never serve as sources.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..contract.band_mapping import (  # noqa: F401
    FORMAT_NAME,
    FORMAT_VERSION,
    BandMapping,
    _band_number,
    _matrix_from_rows,
    _short,
)
from ..errors import BandMappingError
from .wording import Advice

STRATEGIES = ("auto", "index", "nearest", "interpolate", "srf")
MIN_TOLERANCE_NM = 15.0  # floor of the default tolerance: max(0.5 * FWHM, 15 nm)
MAX_INTERP_GAP_NM = 200.0  # never interpolate across wider gaps (e.g. NIR -> SWIR)
SRF_MIN_SOURCES = 3  # raster bands inside the target's FWHM that make it "much finer"
SRF_MIN_COVERAGE = 0.5  # auto falls back from SRF when gaps (bad bands) leave less covered
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


# ---- per-band strategies: each returns (strategy, [(raster band, weight)], quality, note) or None ----


def _width_factor(a: Optional[float], b: Optional[float]) -> float:
    if a and b:
        return 0.6 + 0.4 * min(a, b) / max(a, b)
    return 0.9


def _tolerance(target, src, tolerance_nm: Optional[float]) -> float:
    if tolerance_nm is not None:
        return float(tolerance_nm)
    widths = [w for w in (getattr(target, "fwhm_nm", None), getattr(src, "fwhm_nm", None)) if w]
    return max(0.5 * max(widths) if widths else 0.0, MIN_TOLERANCE_NM)


def _nearest(target, cands, tolerance_nm):
    t = target.wavelength_nm
    best = min(cands, key=lambda c: abs(c.wavelength_nm - t))
    d, tol = abs(best.wavelength_nm - t), _tolerance(target, best, tolerance_nm)
    if d > tol:
        return None
    q = (1.0 - 0.5 * d / tol) * _width_factor(target.fwhm_nm, best.fwhm_nm)
    note = "exact" if d < 0.5 else f"{d:.1f} nm away (tolerance {tol:.0f} nm)"
    return "nearest", [(best, 1.0)], q, note


def _interpolate(target, cands, tolerance_nm):
    t = target.wavelength_nm
    below = [c for c in cands if c.wavelength_nm <= t]
    above = [c for c in cands if c.wavelength_nm >= t]
    if not below or not above:
        return None
    lo = max(below, key=lambda c: c.wavelength_nm)
    hi = min(above, key=lambda c: c.wavelength_nm)
    gap = hi.wavelength_nm - lo.wavelength_nm
    if gap < 0.5 or lo is hi:
        return "interpolate", [(lo, 1.0)], _width_factor(target.fwhm_nm, lo.fwhm_nm), "exact"
    if gap > MAX_INTERP_GAP_NM:
        return None
    w_hi = (t - lo.wavelength_nm) / gap
    dmin = min(t - lo.wavelength_nm, hi.wavelength_nm - t)
    q = 0.8 * (1.0 - gap / (2 * MAX_INTERP_GAP_NM)) * (1.0 - 0.5 * dmin / (gap / 2))
    note = f"between {lo.wavelength_nm:.0f} and {hi.wavelength_nm:.0f} nm"
    return "interpolate", [(lo, 1.0 - w_hi), (hi, w_hi)], max(q, 0.05), note


def _interpolate_or_edge(target, cands, tolerance_nm):
    """Explicit interpolation: beyond the raster's first/last band, the nearest within tolerance."""
    got = _interpolate(target, cands, tolerance_nm)
    if got is None:
        got = _nearest(target, cands, tolerance_nm)
        if got is not None:
            got = got[:3] + (got[3] + "; outside the raster's range, no interpolation",)
    return got


def _sample_widths(cands) -> Dict[int, float]:
    """Spectral interval each source band stands for: half the distance to its neighbours, capped by
    its FWHM so that a gap (removed bad bands) stays uncovered instead of being bridged."""
    s = sorted(cands, key=lambda c: c.wavelength_nm)
    wl = [c.wavelength_nm for c in s]
    out = {}
    for k, c in enumerate(s):
        left = wl[k] - wl[k - 1] if k > 0 else None
        right = wl[k + 1] - wl[k] if k + 1 < len(s) else None
        steps = [x for x in (left, right) if x is not None]
        width = sum(steps) / len(steps) if steps else (c.fwhm_nm or 10.0)
        cap = c.fwhm_nm or min(steps, default=width)
        out[c.index] = min(width, cap)
    return out


def _srf(target, cands, tolerance_nm):
    """Gaussian response of the target (FWHM) sampled at the source centres, times each source's
    spectral interval, normalised to 1. Quality is the share of the response the sources cover."""
    fwhm = target.fwhm_nm or 2.0 * _tolerance(target, None, tolerance_nm)
    sigma = fwhm * _FWHM_TO_SIGMA
    t = target.wavelength_nm
    near = [c for c in cands if abs(c.wavelength_nm - t) <= 1.5 * fwhm]
    if not near:
        return None
    widths = _sample_widths(cands)
    resp = [math.exp(-0.5 * ((c.wavelength_nm - t) / sigma) ** 2) * widths[c.index] for c in near]
    total = sum(resp)
    if total <= 0:
        return None
    coverage = min(1.0, total / (sigma * math.sqrt(2 * math.pi)))
    keep = [(c, r / total) for c, r in zip(near, resp) if r / total >= 1e-4]
    norm = sum(w for _, w in keep)
    keep = [(c, w / norm) for c, w in keep]
    # Quality: covered share of the response, lowered when the weighted centre is off (a coarse
    # raster) or the sources are wider than the target band (they blur it).
    centre = sum(c.wavelength_nm * w for c, w in keep)
    off = 1.0 - 0.5 * min(1.0, abs(centre - t) / _tolerance(target, None, tolerance_nm))
    widths_src = [c.fwhm_nm for c, _ in keep if c.fwhm_nm]
    src_fwhm = float(np.median(widths_src)) if widths_src else None
    blur = _width_factor(fwhm, src_fwhm) if src_fwhm and src_fwhm > fwhm else 1.0
    note = f"{len(keep)} band{'s' if len(keep) != 1 else ''}, Gaussian FWHM {fwhm:.0f} nm" + (
        "" if target.fwhm_nm else " (assumed)"
    )
    if coverage < 0.95:
        note += f", {coverage:.0%} of the response covered"
    if abs(centre - t) >= 1.0:
        note += f", centre {centre - t:+.0f} nm"
    return "srf", keep, coverage * off * blur, note


def _is_finer(target, cands) -> bool:
    """The raster samples this band finely: several bands inside its FWHM, each clearly narrower."""
    if not target.fwhm_nm:
        return False
    inside = [c for c in cands if abs(c.wavelength_nm - target.wavelength_nm) <= target.fwhm_nm / 2]
    widths = [c.fwhm_nm for c in inside if c.fwhm_nm]
    if widths and len(inside) >= 2:
        return float(np.median(widths)) <= target.fwhm_nm / 1.5
    return len(inside) >= SRF_MIN_SOURCES


def _auto(target, cands, tolerance_nm):
    if _is_finer(target, cands):
        row = _srf(target, cands, tolerance_nm)
        if row and row[2] >= SRF_MIN_COVERAGE:
            return row
    return _nearest(target, cands, tolerance_nm) or _interpolate(target, cands, tolerance_nm)


def _by_index(target, band, tolerance_nm):
    if band is None:
        return None
    note, q = "by position", 0.5
    if band.wavelength_nm is not None and getattr(target, "wavelength_nm", None) is not None:
        d, tol = abs(band.wavelength_nm - target.wavelength_nm), _tolerance(target, band, tolerance_nm)
        q = max(0.05, (1.0 - 0.5 * min(1.0, d / tol)) * _width_factor(target.fwhm_nm, band.fwhm_nm))
        if d > tol:
            q, note = min(q, 0.2), f"by index; {d:.0f} nm from the target (tolerance {tol:.0f} nm)"
        else:
            note = "by index" + ("" if d < 0.5 else f"; {d:.1f} nm from the target")
    elif band.wavelength_nm is None:
        note = "by index; raster wavelength unknown"
    if band.bad:
        q, note = min(q, 0.1), note + f"; {band.note or 'bad band'}"
    return "index", [(band, 1.0)], q, note


def _fmt_nm(v: Optional[float]) -> str:
    return "unknown wavelength" if v is None else f"{v:g} nm"


def map_bands(
    raster_bands,
    checkpoint_bands,
    strategy: str = "auto",
    tolerance_nm: Optional[float] = None,
    allow_fill: bool = False,
    indexes: Optional[Sequence[Optional[int]]] = None,
    sensor: Optional[str] = None,
) -> BandMapping:
    """Build the mapping. `raster_bands`: `RasterBand`s (from `detect_bands`); `checkpoint_bands`:
    objects with `name`, `wavelength_nm`, `fwhm_nm` (the card's `Band`s). `indexes` (strategy
    "index"): the 1-based raster band per checkpoint band (None = fill); default: same position."""
    if strategy not in STRATEGIES:
        raise BandMappingError(f"unknown band-mapping strategy '{strategy}'; use one of {', '.join(STRATEGIES)}")
    by_index = {b.index: b for b in raster_bands}
    good = [b for b in raster_bands if not b.bad and b.wavelength_nm is not None]
    if strategy != "index" and not good:
        if any(b.wavelength_nm is not None for b in raster_bands):
            raise Advice("every raster band with a wavelength is a bad band; use [[band_map]] or [[by_position]]")
        raise Advice(
            "the raster's bands have no wavelength metadata: name its sensor and band order with "
            "[[sensor]], use [[band_map]], or [[by_position]]"
        )
    if indexes is not None and len(indexes) != len(checkpoint_bands):
        raise BandMappingError(
            f"band map lists {len(indexes)} raster bands for {len(checkpoint_bands)} checkpoint bands; "
            "give one per checkpoint band (null to fill)"
        )
    rows, missing = [], []
    for k, target in enumerate(checkpoint_bands):
        if strategy == "index":
            i = indexes[k] if indexes is not None else k + 1
            if i is not None and i not in by_index:
                raise BandMappingError(
                    f"band map asks for raster band {i} but the raster has {len(raster_bands)} bands"
                )
            got = _by_index(target, by_index.get(i) if i is not None else None, tolerance_nm)
        elif target.wavelength_nm is None:
            got = None
        else:
            fn = {"auto": _auto, "nearest": _nearest, "interpolate": _interpolate_or_edge, "srf": _srf}[strategy]
            got = fn(target, good, tolerance_nm)
        rows.append(_row(target, got))
        if got is None:
            missing.append(target)
    if missing and not allow_fill:
        raise Advice(_missing_message(missing, good, strategy, tolerance_nm))
    mapping = _assemble(rows, len(raster_bands), sensor, strategy)
    bad = [b.index for b in raster_bands if b.bad]
    if bad and strategy != "index":
        mapping.warnings.append(f"{len(bad)} bad raster band(s) not used: {_ranges(bad)}")
    return mapping


def _ranges(indexes: List[int]) -> str:
    """[130, 131, 132, 200] -> '130-132, 200'."""
    out, start = [], None
    for k, i in enumerate(indexes):
        if start is None:
            start = i
        if k + 1 == len(indexes) or indexes[k + 1] != i + 1:
            out.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ", ".join(out)


def _row(target, got) -> Dict[str, Any]:
    row = {
        "target": target.name,
        "target_wavelength_nm": target.wavelength_nm,
        "target_fwhm_nm": getattr(target, "fwhm_nm", None),
    }
    if got is None:
        row.update(
            strategy="fill",
            sources=[],
            quality=0.0,
            fill=True,
            note="no raster band covers it: filled with the normalization mean",
        )
        return row
    name, sources, q, note = got
    row.update(
        strategy=name,
        quality=round(float(q), 3),
        fill=False,
        note=note,
        sources=[
            {"index": b.index, "name": b.name, "wavelength_nm": b.wavelength_nm, "weight": round(float(w), 6)}
            for b, w in sources
        ],
    )
    return row


def _assemble(rows, raster_band_count, sensor, strategy) -> BandMapping:
    idx, w, fill = _matrix_from_rows(rows)
    return BandMapping(idx, w, fill, rows, raster_band_count, sensor, strategy)


def _summarize_missing(missing, good) -> str:
    """A few bands by name; many as a count and wavelength ranges (one line, not 218 names)."""
    if len(missing) <= 4:
        return "checkpoint band(s) " + ", ".join(f"{t.name} ({_fmt_nm(t.wavelength_nm)})" for t in missing)
    wls = sorted(t.wavelength_nm for t in missing if t.wavelength_nm is not None)
    have = sorted(b.wavelength_nm for b in good)
    runs = []  # missing wavelengths split wherever a usable raster band lies between them
    for w in wls:
        if runs and not any(runs[-1][1] < h < w for h in have):
            runs[-1][1] = w
        else:
            runs.append([w, w])
    spans = ", ".join(f"{lo:.0f}–{hi:.0f}" if hi > lo else f"{lo:.0f}" for lo, hi in runs[:3])
    more = f" and {len(runs) - 3} more ranges" if len(runs) > 3 else ""
    unknown = len(missing) - len(wls)
    return (
        f"{len(missing)} checkpoint bands"
        + (f" needing {spans} nm{more}" if wls else "")
        + (f" ({unknown} without a wavelength)" if unknown else "")
    )


def _missing_message(missing, good, strategy, tolerance_nm) -> str:
    wanted = _summarize_missing(missing, good)
    if good:
        lo, hi = min(b.wavelength_nm for b in good), max(b.wavelength_nm for b in good)
        have = f"the raster's usable bands span {lo:.0f}–{hi:.0f} nm ({len(good)} bands)"
    else:
        have = "the raster has no usable band"
    tol = f"{tolerance_nm:g} nm" if tolerance_nm is not None else "max(0.5·FWHM, 15 nm)"
    return (
        f"cannot map {wanted} with strategy '{strategy}' (tolerance {tol}); {have}. "
        "Check the sensor and band order with [[sensor]]; use [[band_map]], [[tolerance]], "
        "or [[allow_fill]]"
    )


def override_rows(
    mapping: Optional[BandMapping],
    choices: Dict[int, Optional[int]],
    raster_bands,
    checkpoint_bands,
    tolerance_nm: Optional[float] = None,
) -> BandMapping:
    """`mapping` with some checkpoint bands read from a raster band chosen by hand.

    `choices`: {checkpoint band row (0-based): 1-based raster band, or None to fill}. Those rows are
    built like the `index` strategy (same quality formula, note "chosen by hand"); the other rows keep
    `mapping`'s (which may be None when nothing could be mapped automatically: then every row must be
    chosen, or is filled)."""
    by_index = {b.index: b for b in raster_bands}
    rows = []
    for k, target in enumerate(checkpoint_bands):
        if k in choices:
            idx = choices[k]
            if idx is not None and idx not in by_index:
                raise BandMappingError(f"raster band {idx} does not exist (the raster has {len(raster_bands)} bands)")
            got = _by_index(target, by_index.get(idx) if idx is not None else None, tolerance_nm)
            row = _row(target, got)
            row["note"] = "chosen by hand" + (f"; {row['note']}" if row.get("note") else "")
            rows.append(row)
        elif mapping is not None:
            rows.append(dict(mapping.rows[k]))
        else:
            rows.append(_row(target, None))
    out = _assemble(rows, len(raster_bands), mapping.sensor if mapping is not None else None, "manual")
    if mapping is not None:
        out.warnings = list(mapping.warnings)
    return out
