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
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import ClassInfo, ModelCard, Normalization, forest_card, new_model, save_checkpoint
from ..config import DEFAULT_SPECTRAL_SKIP, PAPER_SWITCHES
from ..errors import LabelError, SpectralXError
from ..progress import Progress, ensure
from . import classes as classes_mod
from .baseline import MissingDependency, comparison_line, forest_baseline
from .calibration import choose_adjustment
from .common import (
    adopt_classes,
    check_output,
    count_parameters,
    load_base,
    pick_device,
    place_backbone,
    require_one_source,
)
from .dataset import (
    IGNORE,
    ChipSampler,
    Scene,
    SplitReport,
    label_window,
    pad_scene,
    predict_logits,
    predict_mask,
    split_regions,
)
from .fusion import choose_fusion
from .health import model_warnings
from .labels import LabelSource, open_grid, read_labels
from .loop import LoopResult, run_loop
from .metrics import confusion, scores
from .options import FinetuneOptions
from .rasters import _open, gsd_of, mapping_for, normalize, read_mapped, same_sensor_mappings, scene_statistics
from .rounds import add_round

MAX_SCENE_VALUES = 600_000_000  # ~2.4 GB of float32 per labelled window: refuse beyond
FOREST_TILE = 256  # a forest is per pixel: large tiles only save the pipeline's per-tile overhead


@dataclass
class FinetuneResult:
    checkpoint: Optional[str]
    metrics: Dict[str, Any]
    card: Optional[ModelCard] = None
    model: Any = None  # the trained model (eval mode), for callers that go on
    history: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def comparison(self) -> str:
        """'SpectralX val mIoU 0.52 · random forest 0.47 on the same 1 206 pixels' (or why not)."""
        return comparison_line(self.metrics)


def _as_list(v) -> List[str]:
    if v is None:
        return []
    return [str(v)] if isinstance(v, (str, os.PathLike)) else [str(x) for x in v]


@dataclass
class FinetuneJob:
    """A fine-tuning run, checked and read (prepare_finetune): the labels and class table, the starting
    model and its bands, the labelled scenes normalized and split. Nothing is trained yet."""

    images: List[str]
    labels: List[str]
    val_images: List[str]
    val_labels: List[str]
    output: Optional[str]
    opts: FinetuneOptions
    sources: List[LabelSource]
    table: List[ClassInfo]
    model: Any  # the starting network (None for method "forest")
    card: ModelCard
    backbone_path: Optional[str]
    base_stage: str
    norm: Normalization
    scenes: List[Scene]  # training scenes, then the explicit validation scenes
    split: SplitReport
    validation_kind: str
    train_classes: List[int]  # class indexes with training pixels
    rng: np.random.Generator  # the run's generator, as the split left it
    checkpoint: Optional[str] = None
    sensor: Optional[str] = None
    command: Optional[str] = None
    description: Optional[str] = None
    t_start: float = field(default_factory=time.time)

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.table]

    @property
    def values(self) -> List[int]:
        return [c.value for c in self.table]

    @property
    def train_scenes(self) -> List[Scene]:
        return self.scenes[: len(self.images)]

    @property
    def forest_only(self) -> bool:
        return self.opts.method == "forest"


def finetune(
    images: Union[str, Sequence[str]],
    labels: Union[str, Sequence[str]],
    output: Optional[str],
    *,
    options: Optional[FinetuneOptions] = None,
    class_field: Optional[str] = None,
    classes=None,
    checkpoint: Optional[str] = None,
    backbone: Optional[str] = None,
    backbone_preset: Optional[str] = None,
    tile_size: Optional[int] = None,
    progress: Optional[Progress] = None,
    sensor: Optional[str] = None,
    band_map="auto",
    val_images: Optional[Sequence[str]] = None,
    val_labels: Optional[Sequence[str]] = None,
    unfreeze_backbone: bool = False,
    command: Optional[str] = None,
    description: Optional[str] = None,
    architecture: Optional[dict] = None,
    **option_overrides: Any,
) -> FinetuneResult:
    """Fine-tune (stage 2) and write the best checkpoint to `output` (see module doc).

    images/labels: one label file (vector or raster) per image. classes: a class table (JSON path,
    JSON text, list of ClassInfo/dicts) or None to derive it. checkpoint: start from a SpectralX
    checkpoint (its bands; a pretrain or finetune output); otherwise backbone (+ backbone_preset,
    tile_size) builds a new model whose bands are detected from the first image (`sensor` helps).
    val_images/val_labels: explicit validation data instead of holding out a fraction of the
    regions. Training options: `options` (FinetuneOptions) and/or its fields as keywords (steps,
    lr, method, variant, …); `unfreeze_backbone=True` is the older spelling of method="full".
    Prepare (every check, the data read) -> job -> run (train, calibrate, pool, write).
    """
    t_start = time.time()
    progress = ensure(progress)
    if unfreeze_backbone:
        option_overrides["method"] = "full"
    opts = FinetuneOptions.build(options, **option_overrides)
    job = prepare_finetune(
        images,
        labels,
        output,
        opts,
        class_field=class_field,
        classes=classes,
        checkpoint=checkpoint,
        backbone=backbone,
        backbone_preset=backbone_preset,
        tile_size=tile_size,
        progress=progress,
        sensor=sensor,
        band_map=band_map,
        val_images=val_images,
        val_labels=val_labels,
        command=command,
        description=description,
        architecture=architecture,
        t_start=t_start,
    )
    if job.forest_only:
        return finish_forest(job, progress)
    return run_finetune(job, progress)


# --- prepare: everything that can be wrong with the input, checked before the first step ----------


def prepare_finetune(
    images: Union[str, Sequence[str]],
    labels: Union[str, Sequence[str]],
    output: Optional[str],
    opts: FinetuneOptions,
    *,
    class_field: Optional[str] = None,
    classes=None,
    checkpoint: Optional[str] = None,
    backbone: Optional[str] = None,
    backbone_preset: Optional[str] = None,
    tile_size: Optional[int] = None,
    progress: Optional[Progress] = None,
    sensor: Optional[str] = None,
    band_map="auto",
    val_images: Optional[Sequence[str]] = None,
    val_labels: Optional[Sequence[str]] = None,
    command: Optional[str] = None,
    description: Optional[str] = None,
    architecture: Optional[dict] = None,
    t_start: Optional[float] = None,
) -> FinetuneJob:
    """Check the inputs, open the labels, build the class table and the starting model, read the
    labelled scenes and split them into training and validation: a FinetuneJob for run_finetune."""
    progress = ensure(progress)
    images, labels = _as_list(images), _as_list(labels)
    val_images, val_labels = _as_list(val_images), _as_list(val_labels)
    _check_inputs(images, labels, val_images, val_labels, opts, checkpoint, backbone)
    check_output(output)
    rng = np.random.default_rng(opts.seed)
    torch.manual_seed(opts.seed)
    all_images = images + val_images
    sources = open_label_sources(all_images, labels + val_labels, class_field, progress)
    table, lookups = class_table(sources, classes)
    start = starting_model(
        all_images,
        table,
        opts,
        checkpoint=checkpoint,
        backbone=backbone,
        backbone_preset=backbone_preset,
        tile_size=tile_size,
        sensor=sensor,
        band_map=band_map,
        architecture=architecture,
        log=progress.log,
    )
    opts, model, card, mappings, backbone_path, base_stage = start
    norm, nvalid = scene_statistics(images, mappings[: len(images)])
    if sum(nvalid) == 0:
        raise LabelError("the training images hold no valid (non-nodata) pixel")
    scenes = read_scenes(all_images, sources, lookups, mappings, table, norm, card)
    split, validation_kind = split_scenes(scenes, len(images), sources, opts, rng, [c.name for c in table])
    train_classes = _check_split(split, [c.name for c in table], validation_kind, progress.log)
    return FinetuneJob(
        images,
        labels,
        val_images,
        val_labels,
        output,
        opts,
        sources,
        table,
        model,
        card,
        backbone_path,
        base_stage,
        norm,
        scenes,
        split,
        validation_kind,
        train_classes,
        rng,
        checkpoint=checkpoint,
        sensor=sensor,
        command=command,
        description=description,
        t_start=t_start if t_start is not None else time.time(),
    )


def _check_inputs(
    images: List[str],
    labels: List[str],
    val_images: List[str],
    val_labels: List[str],
    opts: FinetuneOptions,
    checkpoint: Optional[str],
    backbone: Optional[str],
) -> None:
    if not images:
        raise LabelError("no training image given")
    if len(images) != len(labels):
        raise LabelError(f"give one label file per image ({len(images)} images, {len(labels)} label files)")
    if len(val_images) != len(val_labels):
        raise LabelError("give one validation label file per validation image")
    if opts.method == "forest" and checkpoint:
        raise SpectralXError(
            "a random forest is trained from the image's own bands, not from a checkpoint: "
            "drop the checkpoint (-c), or choose a network method to fine-tune it"
        )
    if opts.method != "forest":
        require_one_source(checkpoint, backbone)


def open_label_sources(
    images: Sequence[str], labels: Sequence[str], class_field: Optional[str], progress: Progress
) -> List[LabelSource]:
    """Open and check every label file on its image's grid (nothing is rasterized yet)."""
    grids = [open_grid(p) for p in images]
    sources = [read_labels(lab, grid, class_field) for lab, grid in zip(labels, grids)]
    for s in sources:
        progress.log("labels " + s.summary())
    return sources


def class_table(sources: Sequence[LabelSource], classes=None) -> Tuple[List[ClassInfo], List[Dict[Any, int]]]:
    """The class table (given, or derived from the labels) and, per label source, its label keys ->
    class values; a key that is in no class is refused by name."""
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
            raise LabelError(
                f"{s.path}: class(es) {unknown[:10]} are not in the class table "
                f"({', '.join(f'{c.value}={c.name}' for c in table)}); add them to --classes"
            )
        lookups.append(lookup)
    return table, lookups


def starting_model(
    images: Sequence[str],
    table: List[ClassInfo],
    opts: FinetuneOptions,
    *,
    checkpoint: Optional[str],
    backbone: Optional[str],
    backbone_preset: Optional[str],
    tile_size: Optional[int],
    sensor: Optional[str],
    band_map,
    architecture: Optional[dict],
    log,
) -> Tuple[FinetuneOptions, Any, ModelCard, list, Optional[str], str]:
    """(options, model, card, band mapping per image, backbone file, base stage): a forest's card
    (no network), a checkpoint with the class table adopted (its method and variant kept), or a
    new model on a backbone with the bands of the first image."""
    if opts.method == "forest":  # no network: the bands as detected, a tile size for the streaming pipeline
        bands, mappings = same_sensor_mappings(images, sensor)
        return opts, None, forest_card(bands, list(table), FOREST_TILE), mappings, None, "init"
    if not checkpoint:
        bands, mappings = same_sensor_mappings(images, sensor)
        model, card = new_model(
            backbone, bands, table, preset=backbone_preset, img_size=tile_size, **new_architecture(opts, architecture)
        )
        return opts, model, card, mappings, backbone, "init"
    model, card, backbone_path = load_base(checkpoint, backbone)
    if tile_size and int(tile_size) != card.tile_size:
        raise SpectralXError(
            f"the checkpoint's tile size is {card.tile_size} px; it cannot be "
            f"changed to {tile_size} when fine-tuning from it"
        )
    base_cfg = card.config
    if base_cfg.method != opts.method and opts.method != "spectralx":
        raise SpectralXError(
            f"the checkpoint was trained with method '{base_cfg.method}'; fine-tune it with "
            "the same method, or start a new model from the backbone (--backbone)"
        )
    opts = FinetuneOptions.build(opts, method=base_cfg.method, variant=base_cfg.variant)
    head_arch = dict(architecture or {})
    if card.stage == "pretrain" and not card.architecture.get("spectral_skip") and opts.variant != "paper":
        # a stage-1 model has no segmentation head worth keeping as is: give it the default skip
        head_arch.setdefault("spectral_skip", DEFAULT_SPECTRAL_SKIP)
    model, card, rebuilt = adopt_classes(model, card, table, head_arch)
    if rebuilt:
        log(f"class table ({len(table)} classes) / head options adopted: classifier rebuilt, all " "other tensors kept")
    mappings = [mapping_for(p, card, band_map=band_map, sensor=sensor) for p in images]
    return opts, model, card, mappings, backbone_path, card.stage


def read_scenes(
    images: Sequence[str],
    sources: Sequence[LabelSource],
    lookups: Sequence[Dict[Any, int]],
    mappings: Sequence,
    table: List[ClassInfo],
    norm: Normalization,
    card: ModelCard,
) -> List[Scene]:
    """Rasterize each label source in a window around its labels, read and normalize those pixels."""
    tile = card.tile_size
    index_of = {c.value: i for i, c in enumerate(table)}
    scenes: List[Scene] = []
    region_offset = 0
    for img, src, lookup, mapping in zip(images, sources, lookups, mappings):
        win = label_window(src.pixel_bbox, tile // 2, src.grid.width, src.grid.height)
        n_values = len(card.bands) * int(win.width) * int(win.height)
        if n_values > MAX_SCENE_VALUES:
            raise LabelError(
                f"{src.path}: the labels spread over {int(win.width)}x{int(win.height)} px "
                f"of {os.path.basename(img)}, too large to hold in memory; split the labels "
                "into several files (one per area) and give the image once for each"
            )
        values, regions = src.rasterize(lookup, win)
        with _open(img) as ds:
            x = read_mapped(ds, mapping, window=win)
        valid = np.isfinite(x).any(0)
        x = normalize(x, norm)
        y = np.full(values.shape, IGNORE, np.int16)
        for v, k in index_of.items():
            y[values == v] = k
        y[~valid] = IGNORE  # nodata pixels never train or validate
        reg = np.where(regions > 0, regions.astype(np.int64) + region_offset, 0)
        region_offset = int(reg.max()) + 1 if reg.any() else region_offset
        if src.kind == "vector" and src.used:
            burnt = len(np.unique(regions[regions > 0]))
            if burnt < src.used:
                src.skipped["without any pixel (smaller than a pixel or outside)"] = src.used - burnt
        xp, yp, rp, pad = pad_scene(x, y, reg, tile)
        xp = xp.astype(np.float16)  # half the memory; normalized values are clipped to ±clip
        scenes.append(
            Scene(
                image=img,
                labels=src.path,
                x=xp,
                y=yp,
                region=rp,
                window=(int(win.col_off), int(win.row_off), int(win.width), int(win.height)),
                pad=pad,
            )
        )
    return scenes


def split_scenes(
    scenes: List[Scene],
    n_train: int,
    sources: Sequence[LabelSource],
    opts: FinetuneOptions,
    rng: np.random.Generator,
    names: List[str],
) -> Tuple[SplitReport, str]:
    """Training/validation pixels: the explicit validation scenes, else whole regions held out of the
    training scenes; and what the validation is, in words."""
    train_scenes, val_scenes = scenes[:n_train], scenes[n_train:]
    k_classes = len(names)
    if val_scenes:
        split = split_regions(train_scenes, k_classes, 0.0, rng, names)
        for s in val_scenes:
            s.role = np.where(s.y >= 0, 2, 0).astype(np.uint8)
        split.val_pixels = int(sum((s.role == 2).sum() for s in val_scenes))
        for k in range(k_classes):
            n_val = sum(int(((s.role == 2) & (s.y == k)).sum()) for s in val_scenes)
            split.per_class.setdefault(k, {"train": 0, "val": 0})["val"] = n_val
        return split, "explicit validation images"
    split = split_regions(train_scenes, k_classes, opts.val_fraction, rng, names)
    kinds = {s.geometry_kind for s in sources}
    validation_kind = "held-out whole " + (
        "polygons"
        if kinds == {"polygon"}
        else "points"
        if kinds == {"point"}
        else "connected label regions"
        if kinds == {"raster"}
        else "features/regions"
    )
    if split.cut_regions:  # a class with a single polygon validates on the far part of it
        far = (
            f"the far {opts.val_fraction:.0%} of {split.cut_regions} class(es)' only polygon/region "
            "(next to training pixels: optimistic)"
        )
        validation_kind = far if not split.val_regions else f"{validation_kind}, and {far}"
    return split, validation_kind


def _check_split(split: SplitReport, names: List[str], validation_kind: str, log) -> List[int]:
    """The classes with training pixels (at least two), after logging the split."""
    for note in split.notes:
        log("note: " + note)
    k_classes = len(names)
    train_classes = [k for k in range(k_classes) if split.per_class.get(k, {}).get("train", 0) > 0]
    if not train_classes:
        raise LabelError(
            "no labelled pixel over valid image data: the features are smaller than a pixel "
            "or lie on nodata; draw larger polygons or check the image"
        )
    if len(train_classes) < 2:
        present = [names[k] for k in train_classes] or ["none"]
        raise LabelError(
            f"the training labels hold a single class ({', '.join(present)}) over the "
            "images; a segmentation model needs at least two classes: label other land "
            "cover too"
        )
    missing = [names[k] for k in range(k_classes) if k not in train_classes]
    if missing:
        log(f"note: class(es) {missing} have no training pixel over the images")
    log(
        f"training pixels {split.train_pixels} in {split.train_regions} regions; validation pixels "
        f"{split.val_pixels} ({validation_kind})"
    )
    return train_classes


# --- run: train, calibrate, pool with the forest, write the card ----------------------------------


@dataclass
class _Trained:
    """What training left for the steps after it."""

    loop: LoopResult
    dev: Any
    counts: np.ndarray  # training pixels per class
    class_weights: np.ndarray
    eval_every: int
    n_trainable: int
    n_total: int
    has_val: bool


def run_finetune(job: FinetuneJob, progress: Optional[Progress] = None) -> FinetuneResult:
    """Train the job's network, then calibrate it, pool it with the random forest and write it."""
    progress = ensure(progress)
    log = progress.log
    trained = train_network(job, progress)
    model, loop, dev, has_val = job.model, trained.loop, trained.dev, trained.has_val
    # the network's validation logits, computed once: the logit adjustment, the fusion weight and the
    # warnings all read them (a new class bias only shifts them)
    val_logits, val_true = validation_logits(model, job.scenes, job.card.tile_size, dev) if has_val else (None, None)
    val_logits, adjustment = _calibrate(job, trained, val_logits, val_true, progress)
    if has_val and loop.best_metrics is None:  # 0 steps: score the network as it is
        loop.best_metrics = _validate(model, job.scenes, job.card.tile_size, dev, len(job.table), job.table)
    seconds = time.time() - job.t_start
    baseline, forest = _forest_baseline(job, loop, progress)
    fusion = _fuse(job, forest, val_logits, val_true, has_val, log)
    metrics = _network_metrics(job, trained, baseline, fusion, val_logits, val_true)
    for warning in metrics["warnings"]:
        log("WARNING: " + warning)
    _fill_card(job, trained, metrics, adjustment, fusion, forest, seconds)
    log(comparison_line(metrics))
    card = job.card
    if job.output is not None:
        save_checkpoint(model.to("cpu"), card, job.output)
        place_backbone(job.backbone_path, job.output, log)
        log(f"wrote {job.output}")
    return FinetuneResult(checkpoint=job.output, metrics=metrics, card=card, model=model, history=loop.history)


def train_network(job: FinetuneJob, progress: Progress) -> _Trained:
    """The shared training loop on chips of the training scenes (spectralx.training.loop)."""
    opts, table, tile = job.opts, job.table, job.card.tile_size
    k_classes = len(table)
    dev = pick_device(opts.device)
    model = job.model = job.model.to(dev)
    model.set_stage("finetune", backbone_norms=opts.train_backbone_norms)
    n_trainable, n_total = count_parameters(model)
    split = job.split
    counts = np.array([split.per_class.get(k, {}).get("train", 0) for k in range(k_classes)], np.float64)
    w = class_weights(counts, opts.class_weighting)
    ce_weight = torch.tensor(w, dtype=torch.float32, device=dev)
    sampler = ChipSampler(
        job.train_scenes, k_classes, tile, job.rng, augment=opts.augment, spectral_jitter=opts.spectral_jitter
    )
    has_val = split.val_pixels > 0
    eval_every = int(opts.eval_every or max(10, min(100, opts.steps // 10)))
    scenes = job.scenes

    def step_fn(step: int):
        xb, yb = sampler.batch(opts.batch_size)
        logits = model(xb.to(dev))
        ce = F.cross_entropy(
            logits.float(), yb.to(dev), weight=ce_weight, ignore_index=IGNORE, label_smoothing=opts.label_smoothing
        )
        return ce + opts.balance_weight * model.balance_loss().to(dev), float(ce.detach())

    loop = run_loop(
        model,
        step_fn,
        steps=opts.steps,
        lr=opts.learning_rate,
        weight_decay=opts.weight_decay,
        device=dev,
        progress=progress,
        ema=opts.ema,
        describe="loss",
        evaluate=(lambda: _validate(model, scenes, tile, dev, k_classes, table)) if has_val else None,
        eval_every=eval_every,
        patience=opts.patience,
        log_every=eval_every,
        full_state=opts.method == "full",
    )
    model.tta_flips = opts.tta
    return _Trained(loop, dev, counts, w, eval_every, n_trainable, n_total, has_val)


def _calibrate(job: FinetuneJob, trained: _Trained, val_logits, val_true, progress: Progress):
    """The logit adjustment for rare classes (tau chosen on validation), applied to the model and to
    the validation logits; (val_logits, adjustment or None)."""
    opts, model = job.opts, job.model
    if not (opts.calibrate and trained.has_val and len(val_true)):
        return val_logits, None
    progress.update(trained.loop.steps_run, opts.steps, "calibrating rare classes on validation")
    adjustment = choose_adjustment(val_logits, val_true, trained.counts, job.values)
    if adjustment:
        bias = np.asarray(adjustment["bias"], np.float32)
        val_logits = val_logits - model.class_bias.float().cpu().numpy() + bias
        model.class_bias = torch.tensor(bias, device=trained.dev)
        progress.log(
            f"logit adjustment tau {adjustment['tau']:g}: validation mIoU "
            f"{adjustment['val_miou_before']:.3f} -> {adjustment['val_miou_after']:.3f} "
            "(tau chosen on these pixels)"
        )
    return val_logits, adjustment


def _forest_baseline(job: FinetuneJob, loop: LoopResult, progress: Progress):
    """The random forest on the same pixels (SPEC §7): (its card or why not, the fitted forest)."""
    opts = job.opts
    if not (opts.baseline or opts.fuse == "forest"):
        return None, None
    progress.update(loop.steps_run, opts.steps, "random-forest baseline")
    baseline = forest = None
    try:
        forest = forest_baseline(job.scenes, len(job.table), job.values, job.names, seed=opts.seed)
        baseline = forest.card
        if opts.forest_context and opts.fuse == "forest":  # the pooled forest sees neighbourhoods
            forest = forest_baseline(
                job.scenes, len(job.table), job.values, job.names, seed=opts.seed, context=opts.forest_context
            )
    except MissingDependency as exc:  # a QGIS Python without scikit-learn: say so, keep the model
        baseline = {"validation": f"not run: {exc}"}
        progress.log(f"note: random-forest baseline not run: {exc}")
    progress.check()
    return baseline, forest


def _fuse(job: FinetuneJob, forest, val_logits, val_true, has_val: bool, log) -> Optional[Dict[str, Any]]:
    """Pool the network with the forest, the forest's weight chosen on the validation pixels."""
    if forest is None or job.opts.fuse != "forest":
        return None
    fusion = choose_fusion(val_logits, forest.val_proba, val_true, job.values, job.names) if has_val else None
    model = job.model
    model.forest = forest.forest
    model.fusion_weight = fusion["weight"] if fusion else 0.0
    if fusion:
        v = fusion["val_miou"]
        log(
            f"fusion with the random forest: forest weight {fusion['weight']:g} chosen on the validation "
            f"pixels (mIoU network {v['network']:.3f}, forest {v['forest']:.3f}, pooled {v['fused']:.3f})"
        )
    else:
        log("note: no validation pixels to choose a fusion weight: the map is the network's alone")
    return fusion


def _network_metrics(job: FinetuneJob, trained: _Trained, baseline, fusion, val_logits, val_true) -> Dict[str, Any]:
    loop, k_classes = trained.loop, len(job.table)
    metrics = validation_metrics(loop, job.validation_kind)
    metrics["final_train_loss"] = float(np.mean(loop.losses[-20:])) if loop.losses else None
    metrics["baselines"] = {"random_forest": baseline} if baseline and job.opts.baseline else {}
    if fusion:
        metrics["fusion"] = fusion
    has_val = trained.has_val
    metrics["warnings"] = model_warnings(
        steps_run=loop.steps_run,
        final_loss=metrics["final_train_loss"],
        train_classes=len(job.train_classes),
        confusion=confusion(val_true, val_logits.argmax(1), k_classes) if has_val and len(val_true) else None,
        class_names=job.names,
        network_val_miou=(fusion["val_miou"]["network"] if fusion else metrics.get("val_miou")),
        forest_val_miou=baseline.get("val_miou") if baseline else None,
    )
    return metrics


def _fill_card(
    job: FinetuneJob, trained: _Trained, metrics: Dict[str, Any], adjustment, fusion, forest, seconds: float
) -> None:
    card, opts, model = job.card, job.opts, job.model
    card.classes = list(job.table)
    card.normalization = job.norm
    card.stage = "finetune"
    card.gsd_m = gsd_of(job.images[0]) or card.gsd_m
    card.metrics = metrics
    card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    card.training = _training_record(job, trained, metrics, adjustment, fusion, forest, seconds)
    card.description = job.description or (
        f"SpectralX ({opts.method}, {opts.variant}) fine-tuned on {len(job.images)} image(s) for {len(job.table)} "
        f"classes ({', '.join(job.names)})"
        + (f"; validation mIoU {metrics['val_miou']:.3f}" if "val_miou" in metrics else "")
        + (f"; map: {card.map_source}" if model.forest is not None else "")
    )


def _training_record(
    job: FinetuneJob, trained: _Trained, metrics: Dict[str, Any], adjustment, fusion, forest, seconds: float
) -> Dict[str, Any]:
    """The card's provenance of a network fine-tune. One literal, long on purpose: every field a card
    reader (info, the dock's card view, the loop's rounds) may look for, in one place."""
    card, opts, model, split, loop = job.card, job.opts, job.model, job.split, trained.loop
    base = lambda paths: [os.path.basename(p) for p in paths]  # noqa: E731
    return {
        "stage": "finetune",
        "images": base(job.images),
        "labels": base(job.labels),
        "validation_images": base(job.val_images),
        "validation_labels": base(job.val_labels),
        "class_field": next((s.class_field for s in job.sources if s.class_field), None),
        "label_summary": [s.summary() for s in job.sources],
        "base_checkpoint": os.path.basename(job.checkpoint) if job.checkpoint else None,
        "base_stage": job.base_stage,
        "options": opts.to_dict(),
        "method": opts.method,
        "variant": opts.variant,
        "tta": opts.tta,
        "logit_adjustment": adjustment,
        "fusion": (
            {
                "weight": model.fusion_weight,
                "map": fusion["map"] if fusion else "network",
                "method": fusion["method"] if fusion else "network alone (no validation pixels)",
                "forest": forest.card.get("method"),
            }
            if model.forest is not None
            else None
        ),
        "steps": opts.steps,
        "steps_run": loop.steps_run,
        "stopped_early": loop.stopped_early,
        "batch_size": opts.batch_size,
        "lr": opts.learning_rate,
        "weight_decay": opts.weight_decay,
        "optimizer": "AdamW(0.9, 0.95)",
        "loss": f"cross-entropy (unlabelled ignored, class weights {opts.class_weighting}, label smoothing "
        f"{opts.label_smoothing}) + {opts.balance_weight} x AoMoA balance",
        "class_weights": [round(float(v), 4) for v in trained.class_weights],
        "augmentation": ("flips + 90-degree rotations" if opts.augment else "none")
        + (f" + spectral jitter {opts.spectral_jitter:g}" if opts.spectral_jitter else ""),
        "eval_every": trained.eval_every,
        "patience": opts.patience,
        "val_fraction": opts.val_fraction,
        "train_pixels": split.train_pixels,
        "val_pixels": split.val_pixels,
        "train_regions": split.train_regions,
        "val_regions": split.val_regions,
        "trainable_parameters": trained.n_trainable,
        "total_parameters": trained.n_total,
        "backbone_frozen": opts.method != "full",
        "backbone_tensors_in_checkpoint": len(model.trained_backbone_keys),
        "sensor": job.sensor,
        "seed": opts.seed,
        "device": str(trained.dev),
        "seconds": round(seconds, 1),
        "finished": card.created,
        "history": loop.history,
        # the loop's rounds: the base model's (when continuing from one) plus this run
        "rounds": add_round(
            card.training if job.checkpoint else None, job.names, split.per_class, metrics, loop.steps_run, card.created
        ),
        "command": job.command
        or (
            "spectralx " + " ".join(sys.argv[1:])
            if sys.argv and "spectralx" in os.path.basename(sys.argv[0])
            else "spectralx.training.finetune(...)"
        ),
    }


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
        return {
            "validation": "none: no region could be held out (give more polygons per class, or "
            "explicit validation images)",
            "best_step": loop.best_step,
        }
    m = loop.best_metrics
    return {
        "val_miou": m["miou"],
        "val_oa": m["overall_accuracy"],
        "val_kappa": m["kappa"],
        "val_mean_f1": m["mean_f1"],
        "val_pixels": m["pixels"],
        "per_class_iou": {c["name"]: c["iou"] for c in m["per_class"] if c["in_reference"]},
        "per_class_f1": {c["name"]: c["f1"] for c in m["per_class"] if c["in_reference"]},
        "confusion_matrix": m["confusion_matrix"],
        "confusion_classes": m["class_values"],
        "confusion_matrix_axes": m["confusion_matrix_axes"],
        "best_step": loop.best_step,
        "validation": validation_kind,
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


def finish_forest(job: FinetuneJob, progress: Optional[Progress] = None) -> FinetuneResult:
    """`--method forest`: fit the per-pixel random forest on the training pixels, score it on the
    validation pixels, and write it as a checkpoint (no network, no backbone)."""
    from ..model.forest import ForestModel

    progress = ensure(progress)
    opts, table, names, images, split = job.opts, job.table, job.names, job.images, job.split
    progress.update(0, 1, "random forest")
    base = forest_baseline(job.scenes, len(table), job.values, names, seed=opts.seed, context=opts.forest_context)
    progress.check()
    rf = base.card
    metrics: Dict[str, Any] = {"validation": job.validation_kind, "model": "forest"}
    if "val_miou" in rf:
        metrics.update(
            {
                "val_miou": rf["val_miou"],
                "val_oa": rf["val_oa"],
                "val_kappa": rf["val_kappa"],
                "val_pixels": rf["val_pixels"],
                "per_class_iou": rf["per_class_iou"],
            }
        )
    metrics["baselines"] = {"random_forest": rf}
    metrics["warnings"] = []
    model = ForestModel(base.forest)
    final = forest_card(job.card.bands, list(table), job.card.tile_size, base.forest)
    final.normalization = job.norm
    final.stage = "finetune"
    final.gsd_m = gsd_of(images[0])
    final.metrics = metrics
    final.training = {
        "stage": "finetune",
        "method": "forest",
        "images": [os.path.basename(p) for p in images],
        "labels": [os.path.basename(p) for p in job.labels],
        "label_summary": [s.summary() for s in job.sources],
        "options": opts.to_dict(),
        "train_pixels": split.train_pixels,
        "val_pixels": split.val_pixels,
        "forest": {
            k: v for k, v in rf.items() if k in ("method", "trees", "train_pixels", "seed", "max_leaf_nodes", "context")
        },
        "seed": opts.seed,
        "seconds": round(time.time() - job.t_start, 1),
        "trainable_parameters": 0,
        "steps_run": 0,
        "fusion": {"weight": 1.0, "map": "forest", "method": "random forest alone"},
        "command": job.command or "spectralx.training.finetune(method='forest')",
    }
    final.description = job.description or (
        f"random forest ({rf['trees']} trees, per-pixel spectra) trained on {len(images)} image(s) for "
        f"{len(table)} classes ({', '.join(names)})"
        + (f"; validation mIoU {metrics['val_miou']:.3f}" if "val_miou" in metrics else "")
    )
    progress.log(comparison_line(metrics))
    if job.output is not None:
        save_checkpoint(model, final, job.output)
        progress.log(f"wrote {job.output}")
    return FinetuneResult(checkpoint=job.output, metrics=metrics, card=final, model=model)


def _validate(model, scenes: Sequence[Scene], tile: int, dev, k: int, table: List[ClassInfo]) -> Dict[str, Any]:
    cm = np.zeros((k, k), np.int64)
    for s in scenes:
        mask = s.role == 2
        if not mask.any():
            continue
        pred = predict_mask(model, s.x, mask, tile, dev)
        cm += confusion(s.y[mask], pred[mask], k)
    return scores(cm, [c.value for c in table], [c.name for c in table])
