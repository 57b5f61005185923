"""Issue 20 fix 5: how much of a prediction over a homogeneous area repeats with the tile stride.

A homogeneous raster is made from one class's spectrum (the median of a window of the image, plus
per-pixel noise of that window's standard deviation), segmented with the real pipeline (Hann-blended
overlapping tiles) at overlap 0.25 (stride 48 px for 64 px tiles) and 0.5 (stride 32), for the map
(network pooled with its forest) and the network alone. Reported: the confidence map's mean and sd,
`periodic_share` (variance of the map folded onto one stride period / total variance: 1 means all
variation is tile-periodic) and `fft_share` (FFT power at the stride frequency and its harmonics /
all non-DC power), and the classes predicted. A bench, not a test.

    python bench/tile_periodic.py CHECKPOINT IMAGE COL ROW WIDTH HEIGHT [--sensor landsat8:B2,B3,B4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "engine", ".."))


def periodic(conf: np.ndarray, stride: int):
    """(share of variance folded onto one stride period, FFT power share at the stride harmonics)."""
    c = conf - conf.mean()
    h, w = c.shape
    folded = c[: h // stride * stride, : w // stride * stride]
    folded = folded.reshape(h // stride, stride, w // stride, stride).mean((0, 2))
    power = np.abs(np.fft.fft2(c)) ** 2
    k = h // stride
    harmonics = [(k, 0), (0, k), (2 * k, 0), (0, 2 * k), (k, k)]
    p = sum(power[a % h, b % w] + power[-a % h, -b % w] for a, b in harmonics) / 2
    rest = max(power.sum() - power[0, 0], 1e-12)
    return round(float(folded.var() / max(c.var(), 1e-12)), 3), round(float(p / rest), 3)


def homogeneous(image: str, window, path: str, size: int = 192, seed: int = 0) -> str:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(image) as src:
        x = src.read(window=Window(*window)).reshape(src.count, -1).astype(np.float64)
        prof = src.profile
        tags = [src.tags(i) for i in range(1, src.count + 1)]
        desc = src.descriptions
    nodata = prof.get("nodata")
    good = np.ones(len(x), bool) if nodata is None else (x != nodata).all(1)
    med = np.median(x, 1)
    sd = x.std(1)
    img = med[:, None, None] + sd[:, None, None] * np.random.default_rng(seed).standard_normal((len(x), size, size))
    if nodata is not None:
        img[~good] = nodata
    prof.update(width=size, height=size, tiled=True, blockxsize=32, blockysize=32)
    with rasterio.open(path, "w", **prof) as d:
        d.write(img.round().astype(prof["dtype"]))
        for i, t in enumerate(tags, 1):
            d.update_tags(i, **t)
        d.descriptions = desc
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("image")
    ap.add_argument("window", nargs=4, type=int, metavar="COL ROW WIDTH HEIGHT")
    ap.add_argument("--sensor")
    args = ap.parse_args()
    import rasterio
    import torch

    from spectralx.checkpoint import load_checkpoint
    from spectralx.inference.api import segment

    folder = tempfile.mkdtemp(prefix="tile_periodic_")
    raster = homogeneous(args.image, args.window, os.path.join(folder, "homogeneous.tif"))
    model, card = load_checkpoint(args.checkpoint, device="cpu")
    weight = float(getattr(model, "fusion_weight", 0.0))
    for label, w in (("map", weight), ("network", 0.0)):
        model.fusion_weight = w
        for overlap in (0.25, 0.5):
            out = os.path.join(folder, f"{label}_{overlap}.tif")
            conf_path = out.replace(".tif", "_conf.tif")
            with torch.no_grad():
                segment(
                    raster,
                    None,
                    out,
                    model=(model, card),
                    sensor=args.sensor,
                    overlap=overlap,
                    device="cpu",
                    confidence=conf_path,
                    overwrite=True,
                )
            with rasterio.open(conf_path) as d:
                conf = d.read(1).astype(np.float64)
            with rasterio.open(out) as d:
                cls = d.read(1)
            stride = int(round(card.tile_size * (1 - overlap)))
            share, fft = periodic(conf, stride)
            values, counts = np.unique(cls, return_counts=True)
            names = {c.value: c.name for c in card.classes}
            print(
                json.dumps(
                    {
                        "map": label,
                        "overlap": overlap,
                        "stride": stride,
                        "conf_mean": round(conf.mean(), 4),
                        "conf_sd": round(conf.std(), 4),
                        "periodic_share": share,
                        "fft_share": fft,
                        "classes": {names.get(int(v), "none"): int(n) for v, n in zip(values, counts)},
                    }
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
