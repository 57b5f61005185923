"""Confusion matrices and the accuracy figures derived from them (shared by training and evaluate).

Convention: rows = reference (true) class, columns = predicted class.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np


def confusion(reference: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """k x k counts for class indexes 0..k-1; pixels with either side outside 0..k-1 are ignored."""
    r = np.asarray(reference).ravel().astype(np.int64)
    p = np.asarray(predicted).ravel().astype(np.int64)
    ok = (r >= 0) & (r < k) & (p >= 0) & (p < k)
    return np.bincount(r[ok] * k + p[ok], minlength=k * k).reshape(k, k)


def scores(cm: np.ndarray, values: Sequence[int], names: Optional[Sequence[str]] = None) -> Dict:
    """OA, Cohen's kappa, per-class IoU/F1/precision/recall, mIoU and mean F1 over the classes present
    in the reference (rows with support > 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    ref = cm.sum(1)  # support (reference pixels per class)
    pred = cm.sum(0)
    oa = float(tp.sum() / total) if total else 0.0
    pe = float((ref * pred).sum() / (total * total)) if total else 0.0
    kappa = float((oa - pe) / (1 - pe)) if total and pe < 1 else (1.0 if total and oa == 1 else 0.0)
    per_class: List[Dict] = []
    present = ref > 0
    ious, f1s = [], []
    for i, v in enumerate(values):
        union = ref[i] + pred[i] - tp[i]
        iou = float(tp[i] / union) if union else 0.0
        prec = float(tp[i] / pred[i]) if pred[i] else 0.0
        rec = float(tp[i] / ref[i]) if ref[i] else 0.0
        f1 = float(2 * tp[i] / (ref[i] + pred[i])) if (ref[i] + pred[i]) else 0.0
        per_class.append(
            {
                "value": int(v),
                "name": (names[i] if names else str(v)),
                "iou": iou,
                "f1": f1,
                "precision": prec,
                "recall": rec,
                "support": int(ref[i]),
                "predicted": int(pred[i]),
                "in_reference": bool(present[i]),
            }
        )
        if present[i]:
            ious.append(iou)
            f1s.append(f1)
    return {
        "pixels": int(total),
        "overall_accuracy": oa,
        "kappa": kappa,
        "miou": float(np.mean(ious)) if ious else 0.0,
        "mean_f1": float(np.mean(f1s)) if f1s else 0.0,
        "classes_in_reference": int(present.sum()),
        "per_class": per_class,
        "class_values": [int(v) for v in values],
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "confusion_matrix_axes": "rows = reference, columns = prediction",
    }


def format_table(result: Dict) -> str:
    """A readable report: summary line, per-class table, confusion matrix."""
    lines = [
        f"pixels compared: {result['pixels']}",
        f"overall accuracy: {result['overall_accuracy']:.4f}   kappa: {result['kappa']:.4f}   "
        f"mIoU: {result['miou']:.4f} (over {result['classes_in_reference']} classes in the reference)   "
        f"mean F1: {result['mean_f1']:.4f}",
        "",
    ]
    width = max([len(c["name"]) for c in result["per_class"]] + [5])
    lines.append(f"{'value':>5}  {'class':<{width}}  {'IoU':>6}  {'F1':>6}  {'prec':>6}  {'recall':>6}  {'support':>8}")
    for c in result["per_class"]:
        mark = "" if c["in_reference"] else "  (not in reference)"
        lines.append(
            f"{c['value']:>5}  {c['name']:<{width}}  {c['iou']:6.3f}  {c['f1']:6.3f}  "
            f"{c['precision']:6.3f}  {c['recall']:6.3f}  {c['support']:>8}{mark}"
        )
    lines.append("")
    lines.append("confusion matrix (rows = reference, columns = prediction):")
    vals = result["class_values"]
    cm = result["confusion_matrix"]
    cw = max([len(str(x)) for row in cm for x in row] + [len(str(v)) for v in vals] + [5])
    lines.append(" " * 7 + " ".join(f"{v:>{cw}}" for v in vals))
    for v, row in zip(vals, cm):
        lines.append(f"{v:>5}  " + " ".join(f"{x:>{cw}}" for x in row))
    return "\n".join(lines)
