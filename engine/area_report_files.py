"""The area/accuracy result as files an analyst can hand on: JSON, an HTML report and a PNG chart.

The chart (mapped area beside the error-adjusted estimate with its 95 % interval, per class) is drawn
with Pillow, like the quicklooks (no plotting library needed in QGIS). The HTML is self-contained (the
chart embedded) and is also written beside it as PNG. All three are written to temporary names and
renamed together at the end: a failure leaves none of them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from typing import Any, Dict, List, Optional

from .fileio import fsync_file, remove_quietly, temp_name, write_error

GREY = (170, 170, 170)
INK = (30, 30, 30)


def _colour(c: Optional[str], i: int):
    from .vector_styles import FALLBACK

    c = (c or FALLBACK[i % len(FALLBACK)]).lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _areas(result: Dict[str, Any]):
    """(unit, [(name, colour, mapped, estimate, ci)]) in ha when known, else pixels."""
    ha = result.get("pixel_area_ha")
    key, mapped_key, unit = ("area_ha", "mapped_area_ha", "ha") if ha else ("area_pixels", "mapped_pixels", "px")
    rows = [
        (c["name"], c.get("colour"), float(c[mapped_key]), c[key]["estimate"], c[key]["ci95"])
        for c in result["classes"]
    ]
    return unit, rows


def chart_png(result: Dict[str, Any], width: int = 860, height: int = 440) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    unit, rows = _areas(result)
    font = ImageFont.load_default()
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 80, 20, 48, 40
    top_value = max([max(m, e + (ci or 0)) for _, _, m, e, ci in rows] + [1e-9]) * 1.08
    plot_h = height - top - bottom

    def ypix(v: float) -> int:
        return int(top + plot_h * (1 - max(0.0, v) / top_value))

    d.text((left, 6), f"Mapped and estimated area per class ({unit})", fill=INK, font=font)
    for k in range(6):  # y axis ticks
        v = top_value * k / 5
        y = ypix(v)
        d.line([(left - 4, y), (width - right, y)], fill=(230, 230, 230))
        d.text((4, y - 6), f"{v:,.0f}" if top_value > 20 else f"{v:.2f}", fill=INK, font=font)
    d.line([(left, top), (left, height - bottom)], fill=INK)
    d.line([(left, height - bottom), (width - right, height - bottom)], fill=INK)
    slot = (width - left - right) / max(1, len(rows))
    bar = max(4, int(slot * 0.32))
    for i, (name, colour, mapped, est, ci) in enumerate(rows):
        x0 = int(left + slot * i + slot * 0.15)
        d.rectangle([x0, ypix(mapped), x0 + bar, ypix(0)], fill=GREY)
        x1 = x0 + bar + 2
        d.rectangle([x1, ypix(est), x1 + bar, ypix(0)], fill=_colour(colour, i), outline=INK)
        if ci:
            xm = x1 + bar // 2
            d.line([(xm, ypix(est - ci)), (xm, ypix(est + ci))], fill=INK, width=2)
            for v in (est - ci, est + ci):
                d.line([(xm - 5, ypix(v)), (xm + 5, ypix(v))], fill=INK, width=2)
        d.text((x0, height - bottom + 6), str(name)[: max(4, int(slot / 6))], fill=INK, font=font)
    lx = left  # legend under the title
    d.rectangle([lx, 24, lx + 10, 34], fill=GREY)
    d.text((lx + 14, 23), "mapped (pixel count)", fill=INK, font=font)
    d.rectangle([lx + 150, 24, lx + 160, 34], fill=(120, 120, 200), outline=INK)
    d.text((lx + 164, 23), "estimated (error-adjusted), bar = 95 % interval", fill=INK, font=font)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _pm(entry: Dict[str, Any], digits: int = 3, scale: float = 1.0) -> str:
    if entry is None or entry.get("estimate") is None:
        return "–"
    e, ci = entry["estimate"] * scale, (entry.get("ci95") or 0) * scale
    return f"{e:,.{digits}f} ± {ci:,.{digits}f}"


def report_html(result: Dict[str, Any], png: bytes, png_name: str) -> str:
    esc = html.escape
    unit, _ = _areas(result)
    names = [c["name"] for c in result["classes"]]
    head = "".join(f"<th>{esc(str(n))}</th>" for n in names)

    def matrix(rows: List[List[float]], fmt: str) -> str:
        body = "".join(
            f"<tr><th>{esc(str(names[i]))}</th>"
            + "".join(f"<td>{fmt.format(v)}</td>" for v in row)
            + f"<td><b>{fmt.format(sum(row))}</b></td></tr>"
            for i, row in enumerate(rows)
        )
        col = [sum(r[j] for r in rows) for j in range(len(names))]
        return (
            f"<table><tr><th>map \\ reference</th>{head}<th>total</th></tr>{body}<tr><th>total</th>"
            + "".join(f"<td><b>{fmt.format(v)}</b></td>" for v in col)
            + "</tr></table>"
        )

    ha = result.get("pixel_area_ha")
    per_class = "".join(
        f"<tr><th>{esc(str(c['name']))}</th><td>{c['mapped_pixels']:,}</td>"
        + (f"<td>{c['mapped_area_ha']:,.1f}</td><td>{_pm(c['area_ha'], 1)}</td>" if ha else "")
        + f"<td>{_pm(c['area_pixels'], 0)}</td><td>{_pm(c['users_accuracy'])}</td>"
        f"<td>{_pm(c['producers_accuracy'])}</td><td>{c['sample_points']}</td></tr>"
        for c in result["classes"]
    )
    area_head = "<th>mapped (ha)</th><th>estimated (ha) ± 95 %</th>" if ha else ""
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.get("notes", []))
    oa = result["overall_accuracy"]
    data = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Accuracy and area: {esc(os.path.basename(result.get('map', '')))}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}} th{{background:#f2f2f2}} .small{{color:#666;font-size:90%}}</style>
</head><body>
<h1>Accuracy and area estimate</h1>
<p>Map <code>{esc(str(result.get('map')))}</code>, reference <code>{esc(str(result.get('reference')))}</code>
(field <code>{esc(str(result.get('class_field')))}</code>), {result['sample_size']} points, {esc(result.get('design', ''))} design.<br>
Method: {esc(result['method'])}. Intervals are 95 % (± {result['z']} standard errors).</p>
<h2>Overall accuracy: {_pm(oa)}</h2>
<h2>Per class</h2>
<table><tr><th>class</th><th>mapped pixels</th>{area_head}<th>estimated pixels ± 95 %</th>
<th>user's accuracy ± 95 %</th><th>producer's accuracy ± 95 %</th><th>sample points</th></tr>{per_class}</table>
<p><img src="data:image/png;base64,{data}" alt="mapped and estimated area"><br>
<span class="small">Also saved as {esc(png_name)}.</span></p>
<h2>Error matrix of sample counts</h2>{matrix(result['error_matrix_counts'], '{:,.0f}')}
<h2>Error matrix in estimated area proportions</h2>{matrix(result['error_matrix_proportions'], '{:.4f}')}
<h2>Notes</h2><ul><li>Olofsson, P., Foody, G.M., Herold, M., Stehman, S.V., Woodcock, C.E., Wulder, M.A. (2014). Good
practices for estimating area and assessing accuracy of land change. Remote Sensing of Environment 148, 42–57.</li>{notes}</ul>
</body></html>
"""


def report_paths(json_path: str) -> Dict[str, str]:
    stem = os.path.splitext(json_path)[0]
    return {"json": json_path, "html": stem + ".html", "png": stem + ".png"}


def write_report(result: Dict[str, Any], json_path: str) -> Dict[str, str]:
    """JSON + HTML + PNG beside each other (same stem), all or none."""
    paths = report_paths(json_path)
    png = chart_png(result)
    blobs = {
        "json": (json.dumps(result, indent=1, default=float) + "\n").encode("utf-8"),
        "png": png,
        "html": report_html(result, png, os.path.basename(paths["png"])).encode("utf-8"),
    }
    temps = {k: temp_name(p) for k, p in paths.items()}
    try:
        for k, data in blobs.items():
            with open(temps[k], "wb") as f:
                f.write(data)
            fsync_file(temps[k])
        for k in ("png", "json", "html"):
            os.replace(temps[k], paths[k])
    except BaseException as exc:
        remove_quietly(*temps.values())
        if isinstance(exc, OSError):
            raise write_error(exc, paths["json"]) from None
        raise
    return paths


__all__ = ["chart_png", "report_html", "report_paths", "write_report"]
