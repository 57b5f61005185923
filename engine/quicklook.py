"""PNG quicklook of a class raster with a legend, optionally beside an RGB rendering of the input.

Pillow only (no matplotlib). Class colours and names come from the caller, else from the class
raster itself (the `CLASSES` JSON / `CLASS_<value>` band tags and colour table that
`spectralx.outputs` embeds). Value 0 is nodata / unclassified and drawn light grey.
"""

from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import from_bounds

from .errors import RasterError
from .fileio import atomic_output
from .raster_io import open_raster

NODATA_RGB = (225, 225, 225)
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


def _hex(color: str) -> Tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:
        return ImageFont.load_default()


def classes_from_raster(path: str) -> List[dict]:
    """[{value, name, color}] from a class raster's tags and colour table."""
    with open_raster(path, "class raster") as ds:
        tags = ds.tags(1)
        try:
            cmap = ds.colormap(1)
        except ValueError:
            cmap = {}
    if "CLASSES" in tags:
        try:
            return [
                dict(value=int(c["value"]), name=str(c["name"]), color=str(c["color"]))
                for c in json.loads(tags["CLASSES"])
            ]
        except (ValueError, KeyError, TypeError):
            pass
    names = {int(k[6:]): v for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit()}
    values = sorted(set(names) | {v for v, rgba in cmap.items() if v != 0 and rgba[3] > 0 and v in names})
    out = []
    for v in values:
        r, g, b = cmap.get(v, (128, 128, 128, 255))[:3]
        out.append(dict(value=v, name=names.get(v, f"class {v}"), color="#%02x%02x%02x" % (r, g, b)))
    return out


def _as_dicts(classes: Sequence) -> List[dict]:
    out = []
    for c in classes:
        if isinstance(c, dict):
            out.append(dict(value=int(c["value"]), name=str(c["name"]), color=str(c["color"])))
        else:
            out.append(dict(value=int(c.value), name=str(c.name), color=str(c.color)))
    return out


def _rgb_band_indexes(ds) -> List[int]:
    """Bands nearest 650/560/480 nm when wavelengths are known, else colour-interpretation or 1,2,3."""
    wl = []
    for i in range(1, ds.count + 1):
        t = ds.tags(i)
        try:
            w = float(t.get("wavelength") or t.get("WAVELENGTH"))
            units = (t.get("wavelength_units") or "nm").lower()
            if units.startswith("micro") or units in ("um", "µm") or w < 30:
                w *= 1000.0
            if t.get("bbl", "1") in ("0", "0.0"):
                w = None
        except (TypeError, ValueError):
            w = None
        wl.append(w)
    if sum(w is not None for w in wl) >= 3:
        pick = []
        for target in (650.0, 560.0, 480.0):
            best = min((abs(w - target), i + 1) for i, w in enumerate(wl) if w is not None)
            pick.append(best[1])
        return pick
    names = [c.name for c in ds.colorinterp]
    if all(n in names for n in ("red", "green", "blue")):
        return [names.index(n) + 1 for n in ("red", "green", "blue")]
    return [1, 2, 3] if ds.count >= 3 else [1, 1, 1]


def render_rgb(image: str, bounds, shape: Tuple[int, int], bands: Optional[Sequence[int]] = None) -> np.ndarray:
    """(H, W, 3) uint8 rendering of `image` over `bounds` (2..98 % stretch per band; nodata grey)."""
    with open_raster(image, "image") as ds:
        idx = list(bands) if bands else _rgb_band_indexes(ds)
        if any(not 1 <= i <= ds.count for i in idx):
            raise RasterError(f"RGB bands {idx}: {image} has bands 1 to {ds.count}")
        win = from_bounds(*bounds, transform=ds.transform)
        a = ds.read(
            idx, window=win, out_shape=(len(idx), *shape), resampling=Resampling.nearest, boundless=True, masked=True
        ).astype(np.float64)
    mask = np.ma.getmaskarray(a).any(axis=0)
    data = np.ma.getdata(a)
    out = np.empty((*shape, 3), np.uint8)
    for k in range(3):
        band = data[k]
        valid = band[~mask]
        lo, hi = np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0)
        out[..., k] = np.clip((band - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255).astype(np.uint8)
    out[mask] = NODATA_RGB
    return out


def _read_classes(path: str, bounds, shape: Tuple[int, int]) -> np.ndarray:
    """Class values of `path` over `bounds` at `shape` (nearest; outside the raster: 0)."""
    with open_raster(path, "class raster") as ds:
        win = from_bounds(*bounds, transform=ds.transform)
        return ds.read(1, window=win, out_shape=shape, resampling=Resampling.nearest, boundless=True, fill_value=0)


def _compose(panels, labels, legend_rows, title: Optional[str], out_h: int):
    """The panels side by side under their labels (and the title), the legend on the right."""
    from PIL import Image, ImageDraw

    font, small = _font(16), _font(13)
    pad, sw, line = 12, 18, 24
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max([measure.textlength(t, font=small) for _, t in legend_rows] + [120])
    legend_w = int(pad + sw + 8 + text_w + pad)
    head = 28 + (22 if title else 0)
    legend_h = 22 + line * (len(legend_rows) + 1)
    width = pad + sum(p.width + pad for p in panels) + legend_w
    height = head + max(out_h, legend_h) + pad
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 6), title, fill=TEXT, font=font)
    x = pad
    for p, lab in zip(panels, labels):
        draw.text((x, head - 22), lab, fill=TEXT, font=small)
        canvas.paste(p, (x, head))
        draw.rectangle([x - 1, head - 1, x + p.width, head + p.height], outline=(90, 90, 90))
        x += p.width + pad
    lx, ly = x, head
    draw.text((lx, ly), "Legend", fill=TEXT, font=font)
    ly += 22
    for c, text in legend_rows:
        draw.rectangle([lx, ly + 2, lx + sw, ly + 2 + sw], fill=_hex(c["color"]), outline=(60, 60, 60))
        draw.text((lx + sw + 8, ly + 3), text, fill=TEXT, font=small)
        ly += line
    draw.rectangle([lx, ly + 2, lx + sw, ly + 2 + sw], fill=NODATA_RGB, outline=(60, 60, 60))
    draw.text((lx + sw + 8, ly + 3), "nodata / unclassified", fill=TEXT, font=small)
    return canvas


def quicklook(
    class_raster: str,
    output: str,
    *,
    image: Optional[str] = None,
    rgb_bands: Optional[Sequence[int]] = None,
    classes: Optional[Sequence] = None,
    reference: Optional[str] = None,
    title: Optional[str] = None,
    max_side: int = 1000,
    min_side: int = 360,
) -> dict:
    """Write a PNG of the class raster with its legend (and the input's RGB on the left, if given;
    and a reference class raster, e.g. labels with the same class values, on the right).

    Returns {"output", "size", "scale", "classes": [{value, name, color, pixels, percent}]}.
    """
    from PIL import Image

    if not os.path.isfile(class_raster):
        raise RasterError(f"class raster not found: {class_raster}")
    if max_side < 1:
        raise RasterError(f"the largest panel side must be at least 1 px, not {max_side}")
    with open_raster(class_raster, "class raster") as ds:
        h, w = ds.height, ds.width
        bounds = ds.bounds
        # integer zoom for small rasters (crisp pixels), decimation for large ones
        zoom = max(1, min_side // max(1, min(h, w)))
        shrink = max(1.0, max(h, w) * zoom / max_side)
        out_h, out_w = max(1, int(round(h * zoom / shrink))), max(1, int(round(w * zoom / shrink)))
        data_h, data_w = (
            (h, w) if shrink == 1.0 else (max(1, int(round(h / shrink * zoom))), max(1, int(round(w / shrink * zoom))))
        )
        values = ds.read(1, out_shape=(data_h, data_w), resampling=Resampling.nearest)
    table = _as_dicts(classes) if classes else classes_from_raster(class_raster)
    lut = np.zeros((256, 3), np.uint8)
    lut[:] = NODATA_RGB
    for c in table:
        if 0 < c["value"] < 256:
            lut[c["value"]] = _hex(c["color"])
    values = np.clip(values, 0, 255).astype(np.uint8)
    cls_rgb = Image.fromarray(lut[values]).resize((out_w, out_h), Image.NEAREST)
    counts = np.bincount(values.ravel(), minlength=256)
    total = max(1, int(counts[1:].sum()))

    panels = [cls_rgb]
    labels = ["classes" if not reference else "classes (prediction)"]
    if reference:
        ref = np.clip(_read_classes(reference, bounds, (data_h, data_w)), 0, 255).astype(np.uint8)
        panels.append(Image.fromarray(lut[ref]).resize((out_w, out_h), Image.NEAREST))
        labels.append("reference")
    if image:
        rgb = render_rgb(image, bounds, (data_h, data_w), rgb_bands)
        panels.insert(0, Image.fromarray(rgb).resize((out_w, out_h), Image.NEAREST))
        labels.insert(0, "input (RGB)")

    legend_rows = [
        (c, f"{c['name']}  ({100.0 * counts[c['value']] / total:.1f} %)" if 0 < c["value"] < 256 else c["name"])
        for c in table
    ]
    canvas = _compose(panels, labels, legend_rows, title, out_h)

    os.makedirs(os.path.dirname(os.path.abspath(output)) or ".", exist_ok=True)
    with atomic_output(output, ".png") as tmp:  # a full disk or Ctrl-C leaves no partial PNG
        canvas.save(tmp, "PNG", optimize=True)
    return {
        "output": output,
        "size": canvas.size,
        "zoom": zoom / shrink,
        "classes": [
            dict(
                c,
                pixels=int(counts[c["value"]]) if 0 < c["value"] < 256 else 0,
                percent=round(100.0 * counts[c["value"]] / total, 2) if 0 < c["value"] < 256 else 0.0,
            )
            for c in table
        ],
    }


__all__ = ["quicklook", "classes_from_raster", "render_rgb"]
