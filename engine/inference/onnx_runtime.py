"""ONNX Runtime on the CPU (optional: `pip install 'spectralx-qgis[onnx]'`): the network exported for
the run's tile shape, in float32 or with the frozen backbone's linears in dynamic int8.

The whole network (HyperT, the ViT with its adapters, the head, the class bias) is exported once per
network, batch size and precision, into a temporary folder that is removed as soon as the session
has read it. ONNX Runtime then fuses what torch's eager mode runs op by op (attention, LayerNorm,
GELU, conv + activation) and runs it with its own CPU kernels: on the 2-core AVX2 dev machine that
alone is faster than torch eager in float32, and its int8 kernels for the backbone's MatMuls add to it
(docs/dev/cpu-speed.md has the figures). int8 is, as on the torch path, the backbone's linears only
(qkv, proj, fc1, fc2 of every block; per output channel): HyperT, the adapters and the head, which
fine-tuning fitted, stay float.

A random forest pooled with the network is not exported: the session gives the network's logits and
the forest is pooled with them here, as SpectralX.forward does. The export's input has a fixed batch
(PyramidPooling's adaptive pooling needs static shapes), so a short last batch is padded.

Nothing here is imported unless onnxruntime is installed and a run asks for it (precision.py); any
failure to export or quantize (an unusual architecture, an old onnx) makes `build` return None, and
the torch path runs instead.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import shutil
import tempfile
import types
import warnings
from typing import Optional

import torch
from torch import nn

# 7-bit weights: on AVX2 CPUs without VNNI, ONNX Runtime's u8 x s8 kernels saturate their 16-bit
# intermediate sums; with full-range weights a tiny model agreed with fp32 on 99.6 % of its decided
# pixels (mean |dp| 0.0037), with reduced range on 100 % (0.0015)
REDUCE_RANGE = True


def available() -> bool:
    """Whether onnxruntime and onnx (the exporter's and quantizer's dependency) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def _pool_matrix(out: int, size: int) -> torch.Tensor:
    """(out, size) averaging matrix of adaptive average pooling (the same bins as torch's). Built in
    numpy: under the exporter's tracer it is a constant, not a graph of slice assignments."""
    import numpy as np

    m = np.zeros((out, size), dtype=np.float32)
    for i in range(out):
        a, b = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, a:b] = 1.0 / (b - a)
    return torch.from_numpy(m)


def _adaptive_avg_pool2d(x: torch.Tensor, output_size) -> torch.Tensor:
    """F.adaptive_avg_pool2d as two matrix products: the same values, and exportable to ONNX for
    output sizes that do not divide the input (PyramidPooling's 3 and 6 of a 14-token grid)."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    ph = _pool_matrix(oh, x.shape[-2]).to(x.dtype)
    pw = _pool_matrix(ow, x.shape[-1]).to(x.dtype)
    return torch.matmul(torch.matmul(ph, x), pw.t())


@contextlib.contextmanager
def _exportable_pooling():
    """While exporting, the decoder's adaptive pooling runs as matrix products (exact; see above)."""
    from ..model import decoder

    original = decoder.F
    shim = types.ModuleType("F")
    shim.__dict__.update(original.__dict__)
    shim.adaptive_avg_pool2d = _adaptive_avg_pool2d
    decoder.F = shim
    try:
        yield
    finally:
        decoder.F = original


def export(net: nn.Module, path: str, batch: int) -> None:
    """The network's logits (no forest) for (batch, bands, tile, tile) inputs, as ONNX at `path`."""
    cfg = net.cfg
    plain = copy.copy(net)  # shallow: the same modules and tensors, its own attributes
    plain.forest, plain.fusion_weight = None, 0.0
    plain.eval()
    x = torch.zeros(batch, cfg.in_bands, cfg.img_size, cfg.img_size)
    with _exportable_pooling(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            plain,
            (x,),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["logits"],
            do_constant_folding=True,
        )


def backbone_matmuls(model, net: nn.Module) -> list:
    """Names of the ONNX MatMul nodes whose weight is one of the backbone's nn.Linear weights (found
    by value: the exporter names nodes by call site, which differs in the adapter blocks)."""
    import numpy as np
    from onnx import numpy_helper

    weights = {}
    for m in net.backbone.modules():
        if isinstance(m, nn.Linear):
            w = m.weight.detach().float().t().contiguous().numpy()  # ONNX MatMul's B is W^T
            weights.setdefault((w.shape, w[0, :8].tobytes()), []).append(w)
    inits = {i.name: i for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        init = inits[node.input[1]]
        if len(init.dims) != 2:
            continue
        b = numpy_helper.to_array(init)
        if b.dtype != np.float32:
            continue
        if any(np.array_equal(b, w) for w in weights.get((b.shape, b[0, :8].tobytes()), [])):
            names.append(node.name)
    return names


def quantize(src: str, dst: str, net: nn.Module) -> int:
    """The backbone's linears of the ONNX graph at `src` in dynamic int8 (per output channel), to
    `dst`; returns how many MatMuls were quantized."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = backbone_matmuls(onnx.load(src), net)
    if not nodes:
        raise RuntimeError("no backbone linear found in the exported graph")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process the graph, on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                src,
                dst,
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_quantize=nodes,
                reduce_range=REDUCE_RANGE,
            )
    finally:
        root.setLevel(level)
    return len(nodes)


class OrtNetwork(nn.Module):
    """Runs like the network (x (B, C, T, T) -> logits (B, K, T, T), B <= batch) on an ONNX Runtime
    session. Holds no torch parameters; `cfg`, `forest` and `fusion_weight` are the network's."""

    def __init__(self, net: nn.Module, session, batch: int, precision: str):
        super().__init__()
        self.cfg = net.cfg
        self.forest = getattr(net, "forest", None)
        self.fusion_weight = getattr(net, "fusion_weight", 0.0)
        self.session = session
        self.batch = batch
        self.spectralx_precision = precision  # quantize.MARK: never saved as a model
        self.runtime = "onnxruntime"

    def forest_for_tiles(self, chunk: torch.Tensor, x0s, tile: int, cache=None, at=None) -> Optional[torch.Tensor]:
        """As SpectralX.forest_for_tiles: the forest's part for one strip chunk's tiles, or None."""
        if self.forest is None or not 0 < self.fusion_weight < 1:
            return None
        from ..model.forest import PROBA_FLOOR
        from ..model.forest_tiles import tiles_log_proba

        return tiles_log_proba(self.forest, chunk, x0s, tile, PROBA_FLOOR, cache, at)

    def forward(self, x: torch.Tensor, forest_lp: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = x.shape[0]
        if n > self.batch:
            parts = range(0, n, self.batch)
            return torch.cat(
                [
                    self(x[i : i + self.batch], None if forest_lp is None else forest_lp[i : i + self.batch])
                    for i in parts
                ]
            )
        xs = x.detach().float().cpu()
        if n < self.batch:
            xs = torch.cat([xs, xs.new_zeros((self.batch - n,) + tuple(xs.shape[1:]))])
        out = torch.from_numpy(self.session.run(None, {"x": xs.contiguous().numpy()})[0][:n])
        if self.forest is not None and 0 < self.fusion_weight < 1:
            from ..model.forest import forest_log_proba
            from ..model.fusion import pool

            out = pool(out, forest_log_proba(self.forest, x) if forest_lp is None else forest_lp, self.fusion_weight)
        return out


def build(net: nn.Module, batch: int, kinds=("fp32", "int8"), threads: Optional[int] = None) -> dict:
    """ONNX Runtime copies of `net` for batches of `batch` tiles, one per kind ("fp32": the float
    graph; "int8": the backbone's linears quantized), from one export: {kind: OrtNetwork}.
    Raises on any failure (the caller falls back to torch)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    folder = tempfile.mkdtemp(prefix="spectralx-onnx-")
    out = {}
    try:
        path = os.path.join(folder, "net.onnx")
        export(net, path, batch)
        for kind in kinds:
            file = path
            if kind == "int8":
                file = os.path.join(folder, "net.int8.onnx")
                quantize(path, file, net)
            elif kind != "fp32":
                raise ValueError(f"unknown ONNX Runtime kind {kind!r}")
            session = ort.InferenceSession(file, opts, providers=["CPUExecutionProvider"])
            out[kind] = OrtNetwork(net, session, batch, kind)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the sessions hold their weights in memory
    return out
