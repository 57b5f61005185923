"""The per-pixel random forest as a deployable model: trees as plain arrays, evaluated with NumPy.

Analysts run a random forest on per-pixel spectra today (dzetsaka, SCP, EnMAP-Box); every fine-tune
already fits one as its baseline. Keeping it as arrays (feature, threshold, children, leaf class
distribution) lets it ride in a safetensors checkpoint like any tensor: nothing is unpickled, and a
hostile file can only give wrong numbers, never run code. The arrays are checked on load so that
evaluation always terminates: every child has a larger index than its parent inside its own tree
(scikit-learn's depth-first order), so a path cannot loop, and the depth is bounded.

Evaluation descends all trees for all pixels at once, one level per step (a few tens of gathers),
and returns the mean of the trees' leaf distributions: scikit-learn's `predict_proba`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError

PREFIX = "forest."
CONTEXT_SIZES = (0, 3, 5, 7)  # neighbourhoods of the mean-spectrum features a forest may use
MAX_NODES = 20_000_000  # ~0.6 GB of arrays for 6 classes: far above any forest we write
MAX_DEPTH = 200
# Each tree is grown to at most this many leaves: with 200 trees a forest stays under ~70 MB whatever
# the label set (only label sets of well over 100 000 pixels reach it; the dev cases never do).
MAX_LEAF_NODES = 4096


@dataclass
class ForestArrays:
    """Every node of every tree, concatenated; `roots[t]` is tree t's first node."""

    feature: np.ndarray  # (N,) int32, -1 at leaves
    threshold: np.ndarray  # (N,) float64: go left when x[feature] <= threshold
    left: np.ndarray  # (N,) int32 absolute node index, -1 at leaves
    right: np.ndarray  # (N,) int32
    value: np.ndarray  # (N, K) float32 class distribution (sums to 1 at leaves)
    roots: np.ndarray  # (T,) int32
    depth: int = 0  # longest root-to-leaf path (levels to descend)
    context: int = 0  # neighbourhood of the mean-spectrum features (0: spectra alone; with_context)

    @property
    def num_classes(self) -> int:
        return int(self.value.shape[1])

    @property
    def num_trees(self) -> int:
        return int(len(self.roots))

    @property
    def num_nodes(self) -> int:
        return int(len(self.feature))

    def describe(self) -> Dict[str, int]:
        return {
            "trees": self.num_trees,
            "nodes": self.num_nodes,
            "depth": int(self.depth),
            "classes": self.num_classes,
            "context": int(self.context),
        }

    def features(self, bands: int) -> int:
        """Feature count the trees may split on for `bands` input bands."""
        return bands * (2 if self.context else 1)

    # -- conversion -------------------------------------------------------------------------
    @classmethod
    def from_sklearn(cls, forest, num_classes: int, context: int = 0) -> "ForestArrays":
        """From a fitted RandomForestClassifier whose classes are indices 0..num_classes-1 (a subset
        may be absent from training: those columns stay 0)."""
        cols = np.asarray(forest.classes_, np.int64)
        feats, thrs, lefts, rights, values, roots = [], [], [], [], [], []
        offset = 0
        for est in forest.estimators_:
            t = est.tree_
            leaf = t.children_left < 0
            feats.append(np.where(leaf, -1, t.feature).astype(np.int32))
            thrs.append(np.where(leaf, 0.0, t.threshold).astype(np.float64))
            lefts.append(np.where(leaf, -1, t.children_left + offset).astype(np.int32))
            rights.append(np.where(leaf, -1, t.children_right + offset).astype(np.int32))
            v = np.asarray(t.value[:, 0, :], np.float64)
            v = v / np.maximum(v.sum(1, keepdims=True), 1e-300)
            full = np.zeros((t.node_count, num_classes), np.float32)
            full[:, cols] = v
            values.append(full)
            roots.append(offset)
            offset += t.node_count
        arrays = cls(
            np.concatenate(feats),
            np.concatenate(thrs),
            np.concatenate(lefts),
            np.concatenate(rights),
            np.concatenate(values),
            np.asarray(roots, np.int32),
            context=int(context),
        )
        arrays.depth = arrays.validate(int(forest.n_features_in_), "forest")
        return arrays

    def to_tensors(self) -> Dict[str, torch.Tensor]:
        out = {
            PREFIX + k: torch.from_numpy(np.ascontiguousarray(getattr(self, k)))
            for k in ("feature", "threshold", "left", "right", "value", "roots")
        }
        out[PREFIX + "context"] = torch.tensor([self.context], dtype=torch.int32)
        return out

    @classmethod
    def from_tensors(
        cls, tensors: Dict[str, torch.Tensor], num_features: int, num_classes: int, source: str
    ) -> Optional["ForestArrays"]:
        """The forest held under `forest.` in a checkpoint's tensors (removed from the dict), or None."""
        keys = [k for k in tensors if k.startswith(PREFIX)]
        if not keys:
            return None
        want = {
            "feature": torch.int32,
            "threshold": torch.float64,
            "left": torch.int32,
            "right": torch.int32,
            "value": torch.float32,
            "roots": torch.int32,
            "context": torch.int32,
        }
        got = {k[len(PREFIX) :]: tensors.pop(k) for k in keys}
        extra = sorted(set(got) - set(want))
        missing = sorted(set(want) - set(got))
        if extra or missing:
            raise CheckpointError(
                f"{source}: forest tensors do not match the format (missing {missing}, "
                f"unexpected {extra}); the file is damaged or from another tool"
            )
        for name, dtype in want.items():
            if got[name].dtype != dtype:
                raise CheckpointError(f"{source}: forest tensor {name} is {got[name].dtype}, expected {dtype}")
        context = got.pop("context").reshape(-1)
        if context.numel() != 1 or int(context[0]) not in CONTEXT_SIZES:
            raise CheckpointError(
                f"{source}: forest neighbourhood size {context.tolist()} is not one of "
                f"{CONTEXT_SIZES}; the file is damaged"
            )
        arrays = cls(**{k: got[k].numpy() for k in got}, context=int(context[0]))
        if arrays.value.ndim != 2 or arrays.value.shape[1] != num_classes:
            raise CheckpointError(
                f"{source}: the forest's class distributions have shape "
                f"{tuple(arrays.value.shape)}, expected (nodes, {num_classes})"
            )
        arrays.depth = arrays.validate(arrays.features(num_features), source)
        return arrays

    def validate(self, num_features: int, source: str) -> int:
        """Check that evaluation is well defined and terminates; returns the depth."""
        n = self.num_nodes
        if not 0 < n <= MAX_NODES:
            raise CheckpointError(f"{source}: the forest has {n} nodes (1..{MAX_NODES} allowed)")
        for name in ("feature", "threshold", "left", "right"):
            a = getattr(self, name)
            if a.ndim != 1 or len(a) != n:
                raise CheckpointError(f"{source}: forest array {name} has shape {a.shape}, expected ({n},)")
        if self.value.shape[0] != n or self.roots.ndim != 1 or not 0 < len(self.roots) <= n:
            raise CheckpointError(f"{source}: forest arrays disagree on the number of nodes or trees")
        leaf = self.feature < 0
        if (self.feature >= num_features).any() or (self.feature[leaf] != -1).any():
            raise CheckpointError(
                f"{source}: a forest node splits on a band the model does not have " f"({num_features} bands)"
            )
        if not np.isfinite(self.threshold).all() or not np.isfinite(self.value).all() or (self.value < 0).any():
            raise CheckpointError(f"{source}: forest thresholds or class distributions are not finite numbers")
        # trees are contiguous node ranges starting at their root; children lie after their parent
        # inside the same tree: descents cannot loop or jump into another tree
        if self.roots[0] != 0 or (np.diff(self.roots) <= 0).any() or self.roots[-1] >= n:
            raise CheckpointError(f"{source}: forest tree roots are not increasing node indexes")
        ends = np.append(self.roots[1:], n)
        tree_of = np.repeat(np.arange(len(self.roots)), ends - self.roots)
        idx = np.arange(n)
        inner = ~leaf
        for child in (self.left, self.right):
            c = child[inner].astype(np.int64)
            if (c <= idx[inner]).any() or (c >= n).any() or (tree_of[np.clip(c, 0, n - 1)] != tree_of[inner]).any():
                raise CheckpointError(
                    f"{source}: a forest node's child does not follow it in its own tree; " "the file is damaged"
                )
        if (self.left[leaf] != -1).any() or (self.right[leaf] != -1).any():
            raise CheckpointError(f"{source}: a forest leaf has children; the file is damaged")
        depth, frontier = 0, self.roots.astype(np.int64)
        while True:
            frontier = frontier[~leaf[frontier]]
            if not len(frontier):
                return depth
            depth += 1
            if depth > MAX_DEPTH:
                raise CheckpointError(f"{source}: a forest tree is deeper than {MAX_DEPTH} levels")
            frontier = np.concatenate([self.left[frontier], self.right[frontier]]).astype(np.int64)

    # -- evaluation -------------------------------------------------------------------------
    def predict_proba(self, x: np.ndarray, batch: int = 65_536) -> np.ndarray:
        """(N, C) spectra -> (N, K) float64 mean of the trees' leaf distributions.

        scikit-learn's compiled tree walk when it is installed (~15x faster than NumPy here), fed
        the arrays checked by `validate` (never a pickle); the NumPy walk otherwise."""
        trees = self._compiled()
        if trees is not None:
            return _predict_compiled(trees, np.asarray(x, np.float32), self.num_classes)
        return self.predict_proba_numpy(x, batch)

    def _compiled(self):
        if not hasattr(self, "_trees"):
            self._trees = _compile(self)
        return self._trees

    def predict_proba_numpy(self, x: np.ndarray, batch: int = 65_536) -> np.ndarray:
        """The same as `predict_proba` in plain NumPy: every tree descended for all pixels at once."""
        x = np.asarray(x, np.float32)
        out = np.empty((len(x), self.num_classes), np.float64)
        # leaves point to themselves with an always-true test, so every path just stays put once it
        # reaches its leaf: a fixed number of vectorised steps, no masks
        leaf = self.feature < 0
        feat = np.where(leaf, 0, self.feature).astype(np.intp)
        left = np.where(leaf, np.arange(self.num_nodes), self.left).astype(np.intp)
        right = np.where(leaf, np.arange(self.num_nodes), self.right).astype(np.intp)
        thr = np.where(leaf, np.inf, self.threshold)
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            m = len(xb)
            node = np.broadcast_to(self.roots.astype(np.intp)[:, None], (self.num_trees, m)).copy()
            cols = np.arange(m)[None, :]
            for _ in range(self.depth):
                go_left = xb[cols, feat[node]] <= thr[node]
                node = np.where(go_left, left[node], right[node])
            acc = np.zeros((m, self.num_classes), np.float64)
            for t in range(self.num_trees):  # summed tree by tree: bounded memory
                acc += self.value[node[t]]
            out[i : i + m] = acc / self.num_trees
        return out


def _compile(forest: ForestArrays):
    """scikit-learn Tree objects rebuilt from validated arrays (state set field by field, not
    unpickled), or None when scikit-learn is missing or lays its nodes out differently."""
    try:
        from sklearn.tree._tree import NODE_DTYPE, Tree
    except ImportError:
        return None
    needed = {
        "left_child",
        "right_child",
        "feature",
        "threshold",
        "impurity",
        "n_node_samples",
        "weighted_n_node_samples",
    }
    if not needed <= set(NODE_DTYPE.names or ()):
        return None
    trees = []
    ends = np.append(forest.roots[1:], forest.num_nodes)
    for start, end in zip(forest.roots.astype(np.int64), ends.astype(np.int64)):
        n = int(end - start)
        nodes = np.zeros(n, NODE_DTYPE)
        leaf = forest.feature[start:end] < 0
        nodes["left_child"] = np.where(leaf, -1, forest.left[start:end].astype(np.int64) - start)
        nodes["right_child"] = np.where(leaf, -1, forest.right[start:end].astype(np.int64) - start)
        nodes["feature"] = np.where(leaf, -2, forest.feature[start:end])
        nodes["threshold"] = np.where(leaf, -2.0, forest.threshold[start:end])
        nodes["n_node_samples"] = 1
        nodes["weighted_n_node_samples"] = 1.0
        tree = Tree(int(max(forest.feature.max(), 0)) + 1, np.array([forest.num_classes], np.intp), 1)
        tree.__setstate__(
            {
                "max_depth": int(forest.depth),
                "node_count": n,
                "nodes": nodes,
                "values": forest.value[start:end, None, :].astype(np.float64),
            }
        )
        trees.append(tree)
    return trees


def _predict_compiled(trees, x: np.ndarray, num_classes: int) -> np.ndarray:
    from concurrent.futures import ThreadPoolExecutor

    x = np.ascontiguousarray(x, np.float32)
    width = trees[0].n_features
    if x.shape[1] > width:  # bands past the last one any tree splits on are never read
        x = np.ascontiguousarray(x[:, :width])
    out = np.zeros((len(x), num_classes), np.float64)
    if not len(x):
        return out
    # as many threads as torch may use: the process's share of the cores (a Dask worker is given
    # one core and sets torch to it; counting the machine's cores here made each worker's tree walks
    # compete with the other workers' for every core, bench/dask_long_bench.py)
    workers = max(1, min(len(trees), torch.get_num_threads()))
    chunks = [trees[i::workers] for i in range(workers)]

    def run(chunk):  # tree walks release the GIL: threads share the cores
        acc = np.zeros_like(out)
        for t in chunk:
            acc += t.predict(x).reshape(len(x), -1)
        return acc

    with ThreadPoolExecutor(workers) as pool:
        for part in pool.map(run, chunks):
            out += part
    return out / len(trees)


def box_sum(a: np.ndarray, size: int) -> np.ndarray:
    """Sum over the size x size window around each pixel of (..., H, W), zeros beyond the edges
    (an integral image: exact, no SciPy)."""
    r = size // 2
    h, w = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(r + 1, r), (r + 1, r)]
    c = np.pad(a.astype(np.float64), pad).cumsum(-1).cumsum(-2)
    return (
        c[..., size : size + h, size : size + w]
        - c[..., :h, size : size + w]
        - c[..., size : size + h, :w]
        + c[..., :h, :w]
    )


def with_context(x: np.ndarray, size: int, chunk: int = 16) -> np.ndarray:
    """(C, H, W) normalized spectra -> (2C, H, W): each pixel's spectrum and the mean spectrum of the
    valid pixels in its size x size neighbourhood (nodata is 0 in every band after normalization, in
    training and at inference alike, and never counts). size 0: the spectra alone."""
    if not size:
        return x
    valid = (x != 0).any(0)
    count = np.maximum(box_sum(valid, size), 1.0)
    out = np.empty((2 * x.shape[0],) + x.shape[1:], np.float32)
    out[: x.shape[0]] = x
    for b in range(0, x.shape[0], chunk):  # a few bands at a time: bounded float64 temporaries
        out[x.shape[0] + b : x.shape[0] + b + chunk] = box_sum(x[b : b + chunk], size) / count
    return out


def with_context_at(x: np.ndarray, size: int, mask: np.ndarray, chunk: int = 16) -> np.ndarray:
    """`with_context` at the pixels of `mask` only, as (N, C or 2C) rows: a large labelled scene never
    holds a second full copy of itself."""
    spectra = x[:, mask].T.astype(np.float32)
    if not size:
        return spectra
    valid = (x != 0).any(0)
    count = np.maximum(box_sum(valid, size), 1.0)[mask]
    means = np.empty_like(spectra)
    for b in range(0, x.shape[0], chunk):
        means[:, b : b + chunk] = (box_sum(x[b : b + chunk], size)[:, mask] / count).T
    return np.concatenate([spectra, means], 1)


# probabilities are smoothed before their logarithm: a class no tree voted for must not veto a
# pooled decision (log 0), and a pure forest map keeps its arg-max
PROBA_FLOOR = 1e-3


def forest_log_proba(forest: ForestArrays, x: torch.Tensor, floor: float = PROBA_FLOOR) -> torch.Tensor:
    """(B, C, H, W) normalized tiles -> (B, K, H, W) log of the smoothed forest probabilities."""
    arr = x.detach().float().cpu().numpy()
    if forest.context:
        arr = np.stack([with_context(t, forest.context) for t in arr])
    b, c, h, w = arr.shape
    flat = arr.transpose(0, 2, 3, 1).reshape(-1, c)
    logp = smoothed_log(forest.predict_proba(flat), floor).astype(np.float32)
    out = torch.from_numpy(logp).reshape(b, h, w, -1).permute(0, 3, 1, 2)
    return out.contiguous().to(x.device)


def smoothed_log(p: np.ndarray, floor: float = PROBA_FLOOR) -> np.ndarray:
    """(..., K) forest probabilities -> log of (p + floor) / (1 + K floor), which still sums to one:
    the forest's side of every pooling (inference, the fusion weight's choice, suggestions)."""
    return np.log((p + floor) / (1 + floor * p.shape[-1]))


# a forest model's floor: far below any vote share, so the pipeline's softmax gives back the forest's
# own probabilities (its confidence raster), and log 0 never appears
FOREST_MODEL_FLOOR = 1e-12


class ForestModel(nn.Module):
    """A forest checkpoint as a segmentation model: per-pixel log-probabilities for every tile pixel,
    so the streaming pipeline (blocks, blending, Dask, confidence) runs it unchanged."""

    def __init__(self, forest: ForestArrays):
        super().__init__()
        self.forest = forest
        self.tta_flips = False  # per pixel: flips change nothing
        self.trained_backbone_keys: set = set()

    def forest_for_tiles(self, chunk: torch.Tensor, x0s, tile: int, cache=None, at=None) -> torch.Tensor:
        """forward's result for the tiles of one strip chunk, each pixel's trees walked about once."""
        from .forest_tiles import tiles_log_proba

        return tiles_log_proba(self.forest, chunk, x0s, tile, FOREST_MODEL_FLOOR, cache, at)

    def forward(self, x: torch.Tensor, forest_lp: Optional[torch.Tensor] = None) -> torch.Tensor:
        return forest_lp if forest_lp is not None else forest_log_proba(self.forest, x, floor=FOREST_MODEL_FLOOR)
