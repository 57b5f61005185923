"""Stage 2: fine-tune SpectralX on hand-labelled data (polygons, points or label rasters).

Everything that can be wrong with the input is checked before the first training step: files, class
field, features over the image, label grid, class table, band mapping, at least two classes. Then, in
named steps: the class table, the starting model (a backbone, or a checkpoint), the labelled scenes
(scene-level normalization statistics, region-wise train/validation split), the shared training loop
(spectralx.training.loop: chips around labelled pixels stratified by class with flips and 90°
rotations, AdamW, cross-entropy + AoMoA balance loss, validation and early stopping on mIoU), the
random-forest baseline on the same pixels (spectralx.training.baseline), and the card. Options are
one dataclass (spectralx.training.options.FinetuneOptions) that the CLI, Processing and the dock fill.
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import ClassInfo, ModelCard, forest_card, new_model, save_checkpoint
from ..config import DEFAULT_SPECTRAL_SKIP, PAPER_SWITCHES
from ..errors import LabelError, SpectralXError
from ..progress import Progress, ensure
from . import classes as classes_mod
from .baseline import MissingDependency, comparison_line, forest_baseline
from .rounds import add_round
from .common import (adopt_classes, check_output, count_parameters, load_base, pick_device, place_backbone,
                     require_one_source)
from .calibration import choose_adjustment
from .fusion import choose_fusion
from .health import model_warnings
from .dataset import (IGNORE, ChipSampler, Scene, label_window, pad_scene, predict_logits, predict_mask,
                      split_regions)
from .labels import LabelSource, open_grid, read_labels
from .loop import LoopResult, run_loop
from .metrics import confusion, scores
from .options import FinetuneOptions
from .rasters import (_open, gsd_of, mapping_for, normalize, read_mapped, same_sensor_mappings,
                      scene_statistics)

MAX_SCENE_VALUES = 600_000_000   # ~2.4 GB of float32 per labelled window: refuse beyond
FOREST_TILE = 256   # a forest is per pixel: large tiles only save the pipeline's per-tile overhead


@dataclass
class FinetuneResult:
    checkpoint: Optional[str]
    metrics: Dict[str, Any]
    card: Optional[ModelCard] = None
    model: Any = None                      # the trained model (eval mode), for callers that go on
    history: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def comparison(self) -> str:
        """'SpectralX val mIoU 0.52 · random forest 0.47 on the same 1 206 pixels' (or why not)."""
        return comparison_line(self.metrics)


def _as_list(v) -> List[str]:
    if v is None:
        return []
    return [str(v)] if isinstance(v, (str, os.PathLike)) else [str(x) for x in v]


def finetune(images: Union[str, Sequence[str]], labels: Union[str, Sequence[str]], output: Optional[str], *,
             options: Optional[FinetuneOptions] = None, class_field: Optional[str] = None, classes=None,
             checkpoint: Optional[str] = None, backbone: Optional[str] = None,
             backbone_preset: Optional[str] = None, tile_size: Optional[int] = None,
             progress: Optional[Progress] = None, sensor: Optional[str] = None, band_map="auto",
             val_images: Optional[Sequence[str]] = None, val_labels: Optional[Sequence[str]] = None,
             unfreeze_backbone: bool = False, command: Optional[str] = None,
             description: Optional[str] = None, architecture: Optional[dict] = None,
             **option_overrides: Any) -> FinetuneResult:
    """Fine-tune (stage 2) and write the best checkpoint to `output` (see module doc).

    images/labels: one label file (vector or raster) per image. classes: a class table (JSON path,
    JSON text, list of ClassInfo/dicts) or None to derive it. checkpoint: start from a SpectralX
    checkpoint (its bands; a pretrain or finetune output); otherwise backbone (+ backbone_preset,
    tile_size) builds a new model whose bands are detected from the first image (`sensor` helps).
    val_images/val_labels: explicit validation data instead of holding out a fraction of the
    regions. Training options: `options` (FinetuneOptions) and/or its fields as keywords (steps,
    lr, method, variant, …); `unfreeze_backbone=True` is the older spelling of method="full".
    """
    t_start = time.time()
    progress = ensure(progress)
    if unfreeze_backbone:
        option_overrides["method"] = "full"
    opts = FinetuneOptions.build(options, **option_overrides)
    images, labels = _as_list(images), _as_list(labels)
    val_images, val_labels = _as_list(val_images), _as_list(val_labels)
    if not images:
        raise LabelError("no training image given")
    if len(images) != len(labels):
        raise LabelError(f"give one label file per image ({len(images)} images, {len(labels)} label files)")
    if len(val_images) != len(val_labels):
        raise LabelError("give one validation label file per validation image")
    forest_only = opts.method == "forest"
    if forest_only and checkpoint:
        raise SpectralXError("a random forest is trained from the image's own bands, not from a checkpoint: "
                             "drop the checkpoint (-c), or choose a network method to fine-tune it")
    if not forest_only:
        require_one_source(checkpoint, backbone)
    check_output(output)
    rng = np.random.default_rng(opts.seed)
    torch.manual_seed(opts.seed)
    log = progress.log

    # --- labels: open and check everything (no rasterizing yet) ------------------------------
    all_images = images + val_images
    all_labels = labels + val_labels
    grids = [open_grid(p) for p in all_images]
    sources: List[LabelSource] = []
    for img, lab, grid in zip(all_images, all_labels, grids):
        sources.append(read_labels(lab, grid, class_field))
    for s in sources:
        progress.log("labels " + s.summary())

    # --- class table ------------------------------------------------------------------------
    given = classes_mod.parse_classes(classes) if classes is not None else None
    names_seen = {k for s in sources if s.class_kind == "text" for k in s.keys}
    values_seen = {k for s in sources if s.class_kind == "int" for k in s.keys}
    value_names: Dict[int, str] = {}
    value_colours: Dict[int, str] = {}
    for s in sources:
        value_names.update(s.value_names)
        value_colours.update(s.value_colours)
    table = classes_mod.merge_tables(given, names_seen, values_seen, value_names, value_colours)
    by_name = {c.name.lower(): c.value for c in table}
    by_value = {c.value: c.value for c in table}
    lookups = []
    for s in sources:
        lookup = {}
        unknown = []
        for k in s.keys:
            v = by_name.get(str(k).lower()) if s.class_kind == "text" else by_value.get(int(k))
            if v is None and s.class_kind == "text" and str(k).strip().lstrip("-").isdigit():
                v = by_value.get(int(k))
            if v is None:
                unknown.append(k)
            lookup[k] = v
        if unknown:
            raise LabelError(f"{s.path}: class(es) {unknown[:10]} are not in the class table "
                             f"({', '.join(f'{c.value}={c.name}' for c in table)}); add them to --classes")
        lookups.append(lookup)
    index_of = {c.value: i for i, c in enumerate(table)}
    k_classes = len(table)

    # --- model and bands --------------------------------------------------------------------
    if forest_only:   # no network: the bands as detected, a tile size for the streaming pipeline
        bands, mappings = same_sensor_mappings(all_images, sensor)
        model, card = None, forest_card(bands, list(table), FOREST_TILE)
        backbone_path, base_stage = None, "init"
    elif checkpoint:
        model, card, backbone_path = load_base(checkpoint, backbone)
        if tile_size and int(tile_size) != card.tile_size:
            raise SpectralXError(f"the checkpoint's tile size is {card.tile_size} px; it cannot be "
                                 f"changed to {tile_size} when fine-tuning from it")
        base_cfg = card.config
        if base_cfg.method != opts.method and opts.method != "spectralx":
            raise SpectralXError(f"the checkpoint was trained with method '{base_cfg.method}'; fine-tune it with "
                                 "the same method, or start a new model from the backbone (--backbone)")
        opts = FinetuneOptions.build(opts, method=base_cfg.method, variant=base_cfg.variant)
        head_arch = dict(architecture or {})
        if card.stage == "pretrain" and not card.architecture.get("spectral_skip") and opts.variant != "paper":
            # a stage-1 model has no segmentation head worth keeping as is: give it the default skip
            head_arch.setdefault("spectral_skip", DEFAULT_SPECTRAL_SKIP)
        model, card, rebuilt = adopt_classes(model, card, table, head_arch)
        if rebuilt:
            log(f"class table ({k_classes} classes) / head options adopted: classifier rebuilt, all "
                "other tensors kept")
        mappings = [mapping_for(p, card, band_map=band_map, sensor=sensor) for p in all_images]
        base_stage = card.stage
    else:
        bands, mappings = same_sensor_mappings(all_images, sensor)
        model, card = new_model(backbone, bands, table, preset=backbone_preset, img_size=tile_size,
                                **new_architecture(opts, architecture))
        backbone_path = backbone
        base_stage = "init"
    tile = card.tile_size

    # --- normalization statistics (scene level, training images only) -----------------------
    norm, nvalid = scene_statistics(images, mappings[:len(images)])
    if sum(nvalid) == 0:
        raise LabelError("the training images hold no valid (non-nodata) pixel")

    # --- scenes: rasterize labels in a window around them, read and normalize the pixels -----
    scenes: List[Scene] = []
    region_offset = 0
    for i, (img, src, lookup, mapping) in enumerate(zip(all_images, sources, lookups, mappings)):
        win = label_window(src.pixel_bbox, tile // 2, src.grid.width, src.grid.height)
        n_values = len(card.bands) * int(win.width) * int(win.height)
        if n_values > MAX_SCENE_VALUES:
            raise LabelError(f"{src.path}: the labels spread over {int(win.width)}x{int(win.height)} px "
                             f"of {os.path.basename(img)}, too large to hold in memory; split the labels "
                             "into several files (one per area) and give the image once for each")
        values, regions = src.rasterize(lookup, win)
        with _open(img) as ds:
            x = read_mapped(ds, mapping, window=win)
        valid = np.isfinite(x).any(0)
        x = normalize(x, norm)
        y = np.full(values.shape, IGNORE, np.int16)
        for v, k in index_of.items():
            y[values == v] = k
        y[~valid] = IGNORE                   # nodata pixels never train or validate
        reg = np.where(regions > 0, regions.astype(np.int64) + region_offset, 0)
        region_offset = int(reg.max()) + 1 if reg.any() else region_offset
        if src.kind == "vector" and src.used:
            burnt = len(np.unique(regions[regions > 0]))
            if burnt < src.used:
                src.skipped["without any pixel (smaller than a pixel or outside)"] = src.used - burnt
        xp, yp, rp, pad = pad_scene(x, y, reg, tile)
        xp = xp.astype(np.float16)           # half the memory; normalized values are clipped to ±clip
        scenes.append(Scene(image=img, labels=src.path, x=xp, y=yp, region=rp,
                            window=(int(win.col_off), int(win.row_off), int(win.width), int(win.height)),
                            pad=pad))
    train_scenes = scenes[:len(images)]
    val_scenes = scenes[len(images):]
    names = [c.name for c in table]
    if val_scenes:
        split = split_regions(train_scenes, k_classes, 0.0, rng, names)
        for s in val_scenes:
            s.role = np.where(s.y >= 0, 2, 0).astype(np.uint8)
        split.val_pixels = int(sum((s.role == 2).sum() for s in val_scenes))
        for k in range(k_classes):
            n_val = sum(int(((s.role == 2) & (s.y == k)).sum()) for s in val_scenes)
            split.per_class.setdefault(k, {"train": 0, "val": 0})["val"] = n_val
        validation_kind = "explicit validation images"
    else:
        split = split_regions(train_scenes, k_classes, opts.val_fraction, rng, names)
        kinds = {s.geometry_kind for s in sources}
        validation_kind = ("held-out whole " + ("polygons" if kinds == {"polygon"} else "points" if kinds == {"point"}
                           else "connected label regions" if kinds == {"raster"} else "features/regions"))
        if split.cut_regions:   # a class with a single polygon validates on the far part of it
            far = (f"the far {opts.val_fraction:.0%} of {split.cut_regions} class(es)' only polygon/region "
                   "(next to training pixels: optimistic)")
            validation_kind = far if not split.val_regions else f"{validation_kind}, and {far}"
    for note in split.notes:
        log("note: " + note)
    train_classes = [k for k in range(k_classes) if split.per_class.get(k, {}).get("train", 0) > 0]
    if not train_classes:
        raise LabelError("no labelled pixel over valid image data: the features are smaller than a pixel "
                         "or lie on nodata; draw larger polygons or check the image")
    if len(train_classes) < 2:
        present = [names[k] for k in train_classes] or ["none"]
        raise LabelError(f"the training labels hold a single class ({', '.join(present)}) over the "
                         "images; a segmentation model needs at least two classes: label other land "
                         "cover too")
    missing = [names[k] for k in range(k_classes) if k not in train_classes]
    if missing:
        log(f"note: class(es) {missing} have no training pixel over the images")
    log(f"training pixels {split.train_pixels} in {split.train_regions} regions; validation pixels "
        f"{split.val_pixels} ({validation_kind})")
    if forest_only:
        return finish_forest(scenes, table, card, opts, norm, output, progress, images, labels, sources,
                             validation_kind, split, command, description, t_start)

    # --- training ---------------------------------------------------------------------------
    dev = pick_device(opts.device)
    model = model.to(dev)
    model.set_stage("finetune", backbone_norms=opts.train_backbone_norms)
    n_trainable, n_total = count_parameters(model)
    counts = np.array([split.per_class.get(k, {}).get("train", 0) for k in range(k_classes)], np.float64)
    w = class_weights(counts, opts.class_weighting)
    ce_weight = torch.tensor(w, dtype=torch.float32, device=dev)
    sampler = ChipSampler(train_scenes, k_classes, tile, rng, augment=opts.augment,
                          spectral_jitter=opts.spectral_jitter)
    has_val = split.val_pixels > 0
    eval_every = int(opts.eval_every or max(10, min(100, opts.steps // 10)))

    def step_fn(step: int):
        xb, yb = sampler.batch(opts.batch_size)
        logits = model(xb.to(dev))
        ce = F.cross_entropy(logits.float(), yb.to(dev), weight=ce_weight, ignore_index=IGNORE,
                             label_smoothing=opts.label_smoothing)
        return ce + opts.balance_weight * model.balance_loss().to(dev), float(ce.detach())

    loop = run_loop(model, step_fn, steps=opts.steps, lr=opts.learning_rate, weight_decay=opts.weight_decay,
                    device=dev, progress=progress, ema=opts.ema, describe="loss",
                    evaluate=(lambda: _validate(model, scenes, tile, dev, k_classes, table)) if has_val else None,
                    eval_every=eval_every, patience=opts.patience, log_every=eval_every,
                    full_state=opts.method == "full")
    model.tta_flips = opts.tta
    # the network's validation logits, computed once: the logit adjustment, the fusion weight and the
    # warnings all read them (a new class bias only shifts them)
    val_logits, val_true = validation_logits(model, scenes, tile, dev) if has_val else (None, None)
    adjustment = None
    if opts.calibrate and has_val and len(val_true):
        progress.update(loop.steps_run, opts.steps, "calibrating rare classes on validation")
        adjustment = choose_adjustment(val_logits, val_true, counts, [c.value for c in table])
        if adjustment:
            bias = np.asarray(adjustment["bias"], np.float32)
            val_logits = val_logits - model.class_bias.float().cpu().numpy() + bias
            model.class_bias = torch.tensor(bias, device=dev)
            log(f"logit adjustment tau {adjustment['tau']:g}: validation mIoU {adjustment['val_miou_before']:.3f} "
                f"-> {adjustment['val_miou_after']:.3f} (tau chosen on these pixels)")
    if has_val and loop.best_metrics is None:     # 0 steps: score the network as it is
        loop.best_metrics = _validate(model, scenes, tile, dev, k_classes, table)
    seconds = time.time() - t_start

    # --- the random forest on the same pixels (SPEC §7), pooled with the network --------------------
    baseline = None
    forest = None
    if opts.baseline or opts.fuse == "forest":
        progress.update(loop.steps_run, opts.steps, "random-forest baseline")
        try:
            forest = forest_baseline(scenes, k_classes, [c.value for c in table], names, seed=opts.seed)
            baseline = forest.card
            if opts.forest_context and opts.fuse == "forest":   # the pooled forest sees neighbourhoods
                forest = forest_baseline(scenes, k_classes, [c.value for c in table], names, seed=opts.seed,
                                         context=opts.forest_context)
        except MissingDependency as exc:     # a QGIS Python without scikit-learn: say so, keep the model
            baseline = {"validation": f"not run: {exc}"}
            log(f"note: random-forest baseline not run: {exc}")
        progress.check()
    fusion = None
    if forest is not None and opts.fuse == "forest":
        fusion = choose_fusion(val_logits, forest.val_proba, val_true, [c.value for c in table], names) \
            if has_val else None
        model.forest = forest.forest
        model.fusion_weight = fusion["weight"] if fusion else 0.0
        if fusion:
            v = fusion["val_miou"]
            log(f"fusion with the random forest: forest weight {fusion['weight']:g} chosen on the validation "
                f"pixels (mIoU network {v['network']:.3f}, forest {v['forest']:.3f}, pooled {v['fused']:.3f})")
        else:
            log("note: no validation pixels to choose a fusion weight: the map is the network's alone")

    # --- card ---------------------------------------------------------------------------------
    metrics = validation_metrics(loop, validation_kind)
    metrics["final_train_loss"] = float(np.mean(loop.losses[-20:])) if loop.losses else None
    metrics["baselines"] = {"random_forest": baseline} if baseline and opts.baseline else {}
    if fusion:
        metrics["fusion"] = fusion
    metrics["warnings"] = model_warnings(
        steps_run=loop.steps_run, final_loss=metrics["final_train_loss"], train_classes=len(train_classes),
        confusion=confusion(val_true, val_logits.argmax(1), k_classes) if has_val and len(val_true) else None,
        class_names=names, network_val_miou=(fusion["val_miou"]["network"] if fusion else metrics.get("val_miou")),
        forest_val_miou=baseline.get("val_miou") if baseline else None)
    for warning in metrics["warnings"]:
        log("WARNING: " + warning)
    card.classes = list(table)
    card.normalization = norm
    card.stage = "finetune"
    card.gsd_m = gsd_of(images[0]) or card.gsd_m
    card.metrics = metrics
    card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    card.training = {
        "stage": "finetune",
        "images": [os.path.basename(p) for p in images],
        "labels": [os.path.basename(p) for p in labels],
        "validation_images": [os.path.basename(p) for p in val_images],
        "validation_labels": [os.path.basename(p) for p in val_labels],
        "class_field": next((s.class_field for s in sources if s.class_field), None),
        "label_summary": [s.summary() for s in sources],
        "base_checkpoint": os.path.basename(checkpoint) if checkpoint else None,
        "base_stage": base_stage,
        "options": opts.to_dict(),
        "method": opts.method, "variant": opts.variant, "tta": opts.tta, "logit_adjustment": adjustment,
        "fusion": ({"weight": model.fusion_weight, "map": fusion["map"] if fusion else "network",
                    "method": fusion["method"] if fusion else "network alone (no validation pixels)",
                    "forest": forest.card.get("method")}
                   if model.forest is not None else None),
        "steps": opts.steps, "steps_run": loop.steps_run, "stopped_early": loop.stopped_early,
        "batch_size": opts.batch_size, "lr": opts.learning_rate, "weight_decay": opts.weight_decay,
        "optimizer": "AdamW(0.9, 0.95)",
        "loss": f"cross-entropy (unlabelled ignored, class weights {opts.class_weighting}, label smoothing "
                f"{opts.label_smoothing}) + {opts.balance_weight} x AoMoA balance",
        "class_weights": [round(float(v), 4) for v in w],
        "augmentation": ("flips + 90-degree rotations" if opts.augment else "none")
                        + (f" + spectral jitter {opts.spectral_jitter:g}" if opts.spectral_jitter else ""),
        "eval_every": eval_every, "patience": opts.patience, "val_fraction": opts.val_fraction,
        "train_pixels": split.train_pixels, "val_pixels": split.val_pixels,
        "train_regions": split.train_regions, "val_regions": split.val_regions,
        "trainable_parameters": n_trainable, "total_parameters": n_total,
        "backbone_frozen": opts.method != "full",
        "backbone_tensors_in_checkpoint": len(model.trained_backbone_keys),
        "sensor": sensor, "seed": opts.seed, "device": str(dev), "seconds": round(seconds, 1),
        "finished": card.created, "history": loop.history,
        # the loop's rounds: the base model's (when continuing from one) plus this run
        "rounds": add_round(card.training if checkpoint else None, names, split.per_class, metrics,
                            loop.steps_run, card.created),
        "command": command or ("spectralx " + " ".join(sys.argv[1:]) if sys.argv and "spectralx" in
                               os.path.basename(sys.argv[0]) else "spectralx.training.finetune(...)"),
    }
    card.description = description or (
        f"SpectralX ({opts.method}, {opts.variant}) fine-tuned on {len(images)} image(s) for {k_classes} "
        f"classes ({', '.join(names)})"
        + (f"; validation mIoU {metrics['val_miou']:.3f}" if "val_miou" in metrics else "")
        + (f"; map: {card.map_source}" if model.forest is not None else ""))
    log(comparison_line(metrics))
    if output is not None:
        save_checkpoint(model.to("cpu"), card, output)
        place_backbone(backbone_path, output, log)
        log(f"wrote {output}")
    return FinetuneResult(checkpoint=output, metrics=metrics, card=card, model=model, history=loop.history)


def new_architecture(opts: FinetuneOptions, architecture: Optional[dict] = None) -> Dict[str, Any]:
    """Architecture options of a new model: the method, the variant's switches, the head."""
    arch: Dict[str, Any] = {"spectral_skip": DEFAULT_SPECTRAL_SKIP, "method": opts.method, "variant": opts.variant}
    if opts.variant == "paper":
        arch.update(PAPER_SWITCHES)
    arch.update(architecture or {})
    return arch


def class_weights(counts: np.ndarray, kind: str) -> np.ndarray:
    """Cross-entropy class weights from training pixel counts: none, 1/sqrt(n) or 1/n (mean 1 over
    the classes that have pixels). Chips are already centred on each class equally often, but a chip
    centred on a rare pixel is still mostly common classes."""
    if kind == "none":
        return np.ones(len(counts))
    power = 0.5 if kind == "sqrt-inverse" else 1.0
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1) ** power, 0.0)
    return w / w[counts > 0].mean()


def validation_metrics(loop: LoopResult, validation_kind: str) -> Dict[str, Any]:
    if loop.best_metrics is None:
        return {"validation": "none: no region could be held out (give more polygons per class, or "
                              "explicit validation images)", "best_step": loop.best_step}
    m = loop.best_metrics
    return {
        "val_miou": m["miou"], "val_oa": m["overall_accuracy"], "val_kappa": m["kappa"],
        "val_mean_f1": m["mean_f1"], "val_pixels": m["pixels"],
        "per_class_iou": {c["name"]: c["iou"] for c in m["per_class"] if c["in_reference"]},
        "per_class_f1": {c["name"]: c["f1"] for c in m["per_class"] if c["in_reference"]},
        "confusion_matrix": m["confusion_matrix"], "confusion_classes": m["class_values"],
        "confusion_matrix_axes": m["confusion_matrix_axes"],
        "best_step": loop.best_step, "validation": validation_kind,
    }


def validation_logits(model, scenes: Sequence[Scene], tile: int, dev):
    """(N, K) logits of the model as it stands (class bias included) and (N,) class indices of the
    validation pixels, in the order of spectralx.training.baseline.pixels_of."""
    logits, labels = [], []
    for s in scenes:
        mask = (s.role == 2) & (s.y >= 0)
        if mask.any():
            logits.append(predict_logits(model, s.x, mask, tile, dev))
            labels.append(s.y[mask].astype(np.int64))
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(logits), np.concatenate(labels)


def finish_forest(scenes, table, card, opts, norm, output, progress, images, labels, sources, validation_kind,
                  split, command, description, t_start) -> FinetuneResult:
    """`--method forest`: fit the per-pixel random forest on the training pixels, score it on the
    validation pixels, and write it as a checkpoint (no network, no backbone)."""
    from ..model.forest import ForestModel
    names = [c.name for c in table]
    progress.update(0, 1, "random forest")
    base = forest_baseline(scenes, len(table), [c.value for c in table], names, seed=opts.seed,
                           context=opts.forest_context)
    progress.check()
    rf = base.card
    metrics: Dict[str, Any] = {"validation": validation_kind, "model": "forest"}
    if "val_miou" in rf:
        metrics.update({"val_miou": rf["val_miou"], "val_oa": rf["val_oa"], "val_kappa": rf["val_kappa"],
                        "val_pixels": rf["val_pixels"], "per_class_iou": rf["per_class_iou"]})
    metrics["baselines"] = {"random_forest": rf}
    metrics["warnings"] = []
    model = ForestModel(base.forest)
    final = forest_card(card.bands, list(table), card.tile_size, base.forest)
    final.normalization = norm
    final.stage = "finetune"
    final.gsd_m = gsd_of(images[0])
    final.metrics = metrics
    final.training = {
        "stage": "finetune", "method": "forest", "images": [os.path.basename(p) for p in images],
        "labels": [os.path.basename(p) for p in labels], "label_summary": [s.summary() for s in sources],
        "options": opts.to_dict(), "train_pixels": split.train_pixels, "val_pixels": split.val_pixels,
        "forest": {k: v for k, v in rf.items() if k in ("method", "trees", "train_pixels", "seed", "max_leaf_nodes",
                                                         "context")},
        "seed": opts.seed, "seconds": round(time.time() - t_start, 1), "trainable_parameters": 0,
        "steps_run": 0, "fusion": {"weight": 1.0, "map": "forest", "method": "random forest alone"},
        "command": command or "spectralx.training.finetune(method='forest')",
    }
    final.description = description or (
        f"random forest ({rf['trees']} trees, per-pixel spectra) trained on {len(images)} image(s) for "
        f"{len(table)} classes ({', '.join(names)})"
        + (f"; validation mIoU {metrics['val_miou']:.3f}" if "val_miou" in metrics else ""))
    progress.log(comparison_line(metrics))
    if output is not None:
        save_checkpoint(model, final, output)
        progress.log(f"wrote {output}")
    return FinetuneResult(checkpoint=output, metrics=metrics, card=final, model=model)


def _validate(model, scenes: Sequence[Scene], tile: int, dev, k: int, table: List[ClassInfo]) -> Dict[str, Any]:
    cm = np.zeros((k, k), np.int64)
    for s in scenes:
        mask = s.role == 2
        if not mask.any():
            continue
        pred = predict_mask(model, s.x, mask, tile, dev)
        cm += confusion(s.y[mask], pred[mask], k)
    return scores(cm, [c.value for c in table], [c.name for c in table])
