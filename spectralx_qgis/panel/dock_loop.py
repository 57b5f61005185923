"""The second half of the analyst's loop in the panel, kept out of dock.py: *Suggest where to label*
(a point layer of places where a new label helps most, `spectralx.suggest`) and *Fine-tune again*
(the next round, continuing from the current model with every polygon of the layer)."""

from __future__ import annotations

import os
from typing import Optional

from qgis.core import Qgis, QgsVectorLayer

from .. import styling
from .._vendor.spectralx.contract import defaults, errors
from .run_controller import slug
from .tasks import Done, EngineTask


class SuggestTask(EngineTask):
    def __init__(
        self,
        raster: str,
        checkpoint: str,
        output: str,
        n: int,
        backbone: Optional[str] = None,
        band_map=None,
        sensor: Optional[str] = None,
        bbox=None,
        device: str = "auto",
        callback=None,
    ):
        super().__init__(f"SpectralX: where to label next in {os.path.basename(raster)}", callback)
        self.args = dict(
            raster=raster,
            checkpoint=checkpoint,
            n=n,
            backbone=backbone,
            sensor=sensor,
            bbox=bbox,
            device=device,
            band_map=band_map if band_map is not None else "auto",
        )
        self.output = output
        self.outputs = [output]

    def work(self, progress):
        from .._vendor.spectralx import suggest as engine

        args = dict(self.args)
        result = engine.suggest(args.pop("raster"), args.pop("checkpoint"), progress=progress, **args)
        progress.check()
        engine.save(result, self.output)
        return result


def load_points(path: str, name: str) -> QgsVectorLayer:
    """The suggestions in the SpectralX group, styled by predicted class (the style is in the file)."""
    from .._vendor.spectralx import suggest as engine

    layer = QgsVectorLayer(f"{path}|layername={engine.LAYER}", name, "ogr")
    if not layer.isValid():
        raise RuntimeError(f"could not load the suggestions {path}")
    layer.loadDefaultStyle()
    styling.add_to_group(layer)
    return layer


def suggest(dock, n: Optional[int] = None):
    """Start *Suggest where to label* on the panel's raster and checkpoint (the area of the last
    segmentation when there is one); the point layer is added when done."""
    layer = dock.flows.ready()
    if layer is None:
        return None
    n = int(n or dock.suggest_spin.value())
    try:
        band_map, sensor = dock.bands.for_run()
    except Exception as exc:  # noqa: BLE001
        dock._message(errors.for_qgis(exc, "dock"), Qgis.Critical)
        return None
    stamp = dock.runs.stamp()[:15]
    output = os.path.join(dock.output_folder(), f"{slug(layer.name())[:24]}_label_next_{stamp}.gpkg")
    task = SuggestTask(
        layer.source().split("|")[0],
        dock.checkpoint_path(),
        output,
        n,
        backbone=dock.flows.backbone(),
        band_map=band_map if band_map != "auto" else None,
        sensor=sensor,
        bbox=getattr(dock, "last_bbox", None),
        device=dock.device_combo.currentData() or defaults.DEVICE,
    )
    name = f"{layer.name()} · label next ({n})"

    def done(t):
        if not isinstance(t.outcome, Done):
            return
        try:
            dock.suggestion_layer = load_points(output, name)
        except Exception as exc:  # noqa: BLE001
            dock._message(str(exc), Qgis.Critical)
            return
        res = t.outcome.value
        notes = "; ".join(res.notes)
        dock._message(
            f"{len(res)} places to label next in '{name}': digitize a polygon of the right class at each, "
            "then Fine-tune again." + (f" Note: {notes}" if notes else ""),
            Qgis.Success,
        )

    return dock.runs.start(task, done)


def can_continue(card) -> bool:
    """A model fine-tuned by the network methods continues; a forest is retrained from all polygons."""
    return card is not None and card.stage == "finetune"


def next_round(card) -> int:
    rounds = (card.training or {}).get("rounds") if card is not None else None
    if isinstance(rounds, list) and rounds:
        return int(rounds[-1].get("round", len(rounds))) + 1
    return 2 if can_continue(card) else 1


def finetune_again(dock):
    """The next round: from the current model, with every polygon of the layer (old and new), the
    current model's method; same as *Fine-tune from polygons*, which continues from the selection."""
    if not can_continue(dock.card):
        dock._message(
            "Fine-tune again continues a fine-tuned model: select one under Model ▸ Checkpoint, or "
            "use Fine-tune from polygons for the first round.",
            Qgis.Warning,
        )
        return None
    method = "forest" if dock.card.is_forest else (dock.card.training or {}).get("method") or "spectralx"
    i = dock.method_combo.findData(method)
    if i >= 0:
        dock.method_combo.setCurrentIndex(i)
    return dock.finetune()
