"""Issue 20's simulated loop on the EnMAP sample, end to end through the engine (one seed, few steps:
the comparison of suggested against random places over seeds is bench/loop_bench.py's job).

Round 1 on two 5 x 5 px "polygons" per class -> `suggest` picks 20 places -> their reference classes
are added as labels -> round 2 continues from round 1 with all labels; its card keeps both rounds.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import loop_bench as loop  # noqa: E402  (the bench's simulated analyst, shared)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_round1_suggest_label_round2(tmp_path):
    from spectralx.checkpoint import read_card
    from spectralx.suggest import default_min_distance, suggest

    reference, profile = loop.read(loop.LABELS[""])
    train, _ = loop.read(loop.LABELS["_train"])
    rng = np.random.default_rng(0)
    lab1 = loop.round1_labels(train, rng, regions=2, half=2)
    r1 = str(tmp_path / "r1.safetensors")
    loop.finetune(loop.write_labels(str(tmp_path / "r1.tif"), lab1, profile), r1, seed=0, steps=8)

    # the analyst's view: 20 places over the whole image, spread and across classes
    s = suggest(loop.IMAGE, r1, n=20, device="cpu")
    assert len(s) == 20
    card1 = read_card(r1)
    assert set(s.classes.tolist()) <= {c.value for c in card1.classes} and len(set(s.classes.tolist())) >= 3
    d = np.hypot(s.rows[:, None] - s.rows[None], s.cols[:, None] - s.cols[None]) + np.eye(20) * 1e9
    assert d.min() >= s.min_distance_px - 1e-6
    assert np.all((s.confidence > 0) & (s.confidence <= 1))
    assert s.min_distance_px >= default_min_distance(1, 20)

    # the simulated analyst labels the suggested places the sample has a reference for
    pool = (train > 0) & (lab1 == 0)
    places = loop.suggested_places(r1, pool, 20)
    assert len(places) == 20 and all(pool[r, c] for r, c in places)
    lab2 = lab1.copy()
    for r, c in places:
        lab2 = np.where(lab2 > 0, lab2, loop.window_labels(reference, pool, r, c, 1))
    added = int((lab2 > 0).sum() - (lab1 > 0).sum())
    assert added >= 20

    r2 = str(tmp_path / "r2.safetensors")
    loop.finetune(loop.write_labels(str(tmp_path / "r2.tif"), lab2, profile), r2, seed=0, steps=8, checkpoint=r1)
    rounds = read_card(r2).training["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert sum(rounds[1]["labels"].values()) - sum(rounds[0]["labels"].values()) == added
    assert all(0 <= r["val_miou"] <= 1 for r in rounds)
