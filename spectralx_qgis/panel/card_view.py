"""The model card as the panel shows it: what the model is, its classes and bands, and how good it is
(validation metrics as values, whether anything was validated at all, and the random-forest baseline
trained on the same pixels when the card has one)."""

from __future__ import annotations

import html
import os
from typing import Any, Dict, Optional

from qgis.PyQt.QtWidgets import QTextBrowser

_METRICS = [("miou", "mIoU"), ("oa", "OA"), ("overall_accuracy", "OA"), ("kappa", "κ"), ("mean_f1", "mean F1")]


def _translate(text: str) -> str:
    try:
        from .._vendor.spectralx.contract import errors

        return errors.for_qgis(Exception(text), "dock")
    except Exception:  # noqa: BLE001
        return text


def _baseline(metrics: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The random-forest block: metrics["baselines"]["random_forest"] (spectralx.training.baseline)."""
    found = (
        (metrics.get("baselines") or {}).get("random_forest") if isinstance(metrics.get("baselines"), dict) else None
    )
    return found if isinstance(found, dict) else None


def metrics_html(card) -> str:
    """Validation metrics as values, the validation status in words, and the forest baseline."""
    e = html.escape
    metrics = card.metrics or {}
    scores = []
    for key, label in _METRICS:
        value = metrics.get(f"val_{key}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and label not in [s[0] for s in scores]:
            scores.append((label, float(value)))
    lines = []
    if scores:
        pixels = metrics.get("val_pixels")
        where = f" on {int(pixels)} held-out pixels" if isinstance(pixels, (int, float)) else ""
        how = metrics.get("validation")
        how = f" ({e(str(how))})" if isinstance(how, str) and how and not how.startswith("none") else ""
        lines.append("Validation" + e(where) + how + ": " + ", ".join(f"{lbl} <b>{v:.3f}</b>" for lbl, v in scores))
        per_class = metrics.get("per_class_iou")
        if isinstance(per_class, dict) and per_class:
            items = ", ".join(
                f"{e(str(k))} {float(v):.2f}" for k, v in list(per_class.items())[:12] if isinstance(v, (int, float))
            )
            lines.append(f"<span style='color:#555'>IoU per class: {items}</span>")
    else:
        why = metrics.get("validation")
        text = _translate(str(why)) if why else "no validation metrics recorded"
        lines.append(f"<span style='color:#b00'><b>Not validated</b>: {e(text)}</span>")
    rf = _baseline(metrics)
    if rf is not None:
        rf_miou = rf.get("val_miou")
        if isinstance(rf_miou, (int, float)):
            model = next((v for lbl, v in scores if lbl == "mIoU"), None)
            verdict = ""
            if model is not None:
                verdict = " — this model is better" if model > rf_miou else " — the forest is better"
            lines.append(f"Random-forest baseline (same pixels): mIoU <b>{float(rf_miou):.3f}</b>{e(verdict)}")
        else:
            lines.append("Random-forest baseline: " + e(str(rf.get("validation", "not scored"))))
    else:
        lines.append("<span style='color:#555'>No random-forest baseline in this card.</span>")
    lines[:0] = warnings_html(metrics)
    fusion = fusion_html(metrics)
    if fusion:
        lines.insert(len(lines) - 1 if rf is not None else len(lines), fusion)
    extra = []
    if isinstance(metrics.get("best_step"), (int, float)):
        extra.append(f"best step {int(metrics['best_step'])}")
    if isinstance(metrics.get("final_train_loss"), (int, float)):
        extra.append(f"final training loss {float(metrics['final_train_loss']):.3f}")
    if extra:
        lines.append("<span style='color:#555'>" + ", ".join(extra) + "</span>")
    return "<br/>".join(lines)


def warnings_html(metrics: Dict[str, Any]) -> list:
    """The model's warnings (spectralx.training.health), first and in red: an analyst trains once."""
    found = metrics.get("warnings")
    if not isinstance(found, list):
        return []
    return [f"<span style='color:#b00'><b>⚠ Warning</b>: {html.escape(str(w))}</span>" for w in found[:5]]


def fusion_html(metrics: Dict[str, Any]) -> str:
    """The three validation scores side by side (network, forest, pool) and which one makes the map."""
    f = metrics.get("fusion")
    if not isinstance(f, dict) or not isinstance(f.get("val_miou"), dict):
        return ""
    v = f["val_miou"]
    try:
        three = {k: float(v[k]) for k in ("network", "forest", "fused")}
        weight = float(f.get("weight", 0))
    except (KeyError, TypeError, ValueError):
        return ""
    best = max(three, key=three.get)
    label = {"network": "network", "forest": "random forest", "fused": f"pool (forest weight {weight:g})"}
    cells = ", ".join(
        (f"<b>{label[k]} {three[k]:.3f}</b>" if k == best else f"{label[k]} {three[k]:.3f}")
        for k in ("network", "forest", "fused")
    )
    what = {"network": "the network alone", "forest": "the random forest alone"}.get(
        str(f.get("map")), f"the network pooled with the forest (forest weight {weight:g})"
    )
    return f"Validation mIoU of the three models: {cells}. <b>The map uses {html.escape(what)}</b>."


def card_html(card, path: str) -> str:
    e = html.escape
    parts = [f"<b>{e(os.path.basename(path))}</b>"]
    desc = card.description or ""
    if desc:
        short = desc if len(desc) <= 140 else desc[: desc.rfind(" ", 0, 140)] + " …"
        parts.append(f"<br/><i>{e(short)}</i>")
    # how good it is, and which model makes the map, before what it is: visible without scrolling
    parts.append("<br/><b>Quality</b>: " + metrics_html(card) + "<br/>")
    stage = card.stage
    gsd = f", {card.gsd_m:g} m GSD" if card.gsd_m else ""
    if card.is_forest:
        ctx = int(((card.architecture or {}).get("forest") or {}).get("context") or 0)
        what = f"spectra + {ctx}x{ctx} mean spectrum" if ctx else "per-pixel spectra"
        parts.append(f"<br/>Random forest ({what}, no network, no backbone); tile {card.tile_size} px{gsd}")
    else:
        parts.append(f"<br/>Stage: {e(str(stage))}; tile {card.tile_size} px{gsd}; backbone {e(card.backbone.preset)}")
    parts.append("<br/><b>Classes</b><table cellspacing='2' cellpadding='0'>")
    per_row = 3
    for i, c in enumerate(card.classes):
        if i % per_row == 0:
            parts.append("<tr>")
        parts.append(
            f"<td bgcolor='{e(c.color)}' width='12'>&nbsp;&nbsp;&nbsp;</td>"
            f"<td>&nbsp;{int(c.value)} {e(c.name)}&nbsp;&nbsp;</td>"
        )
        if i % per_row == per_row - 1 or i == len(card.classes) - 1:
            parts.append("</tr>")
    parts.append("</table>")
    wl = [b.wavelength_nm for b in card.bands]
    names = ", ".join(b.name for b in card.bands[:3]) + (", …" if len(card.bands) > 3 else "")
    sensor = (card.training or {}).get("sensor")
    trained = f"; trained on {e(str(sensor))}" if sensor else ""
    parts.append(
        f"<b>Expected bands</b>: {len(card.bands)}, {min(wl):.0f}–{max(wl):.0f} nm "
        f"<span style='color:#666'>({e(names)}){trained}</span>"
    )
    parts.append(rounds_html(card))
    return "".join(parts)


def _score(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "–"


def rounds_html(card) -> str:
    """The loop's rounds (labels and validation scores per round), when the card has more than one."""
    rounds = [r for r in ((card.training or {}).get("rounds") or []) if isinstance(r, dict)]
    if len(rounds) < 2:
        return ""
    rows = "".join(
        f"<tr><td>{int(r.get('round', i + 1))}</td><td align='right'>{int(r.get('labelled_pixels') or 0)}</td>"
        f"<td>{_score(r.get('val_miou'))}</td><td>{_score(r.get('network_val_miou'))}</td>"
        f"<td>{_score(r.get('forest_val_miou'))}</td></tr>"
        for i, r in enumerate(rounds[-10:])
    )
    return (
        "<br/><b>Rounds</b><table cellspacing='4' cellpadding='0'><tr><th>round</th><th>labelled px</th>"
        f"<th>map mIoU</th><th>network</th><th>forest</th></tr>{rows}</table>"
    )


class CardView(QTextBrowser):
    """Read-only model card; wraps, never widens the panel."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setMinimumHeight(90)
        self.setMaximumHeight(190)
        self.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)

    def show_card(self, card, path: str):
        self.setHtml(card_html(card, path))
        self.setToolTip(card.description or "")

    def show_error(self, text: str):
        self.setHtml(f"<p style='color:#b00'>{html.escape(text)}</p>")
        self.setToolTip("")

    def clear_card(self):
        self.setHtml("")
        self.setToolTip("")
