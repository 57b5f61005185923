"""spectralx.suggest (issue 20 item 8): the picks are spread in space and across classes; the CLI writes
the points and refuses bad input in one line."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli


def test_spread_keeps_the_distance_and_takes_the_classes_in_turn():
    from spectralx.suggest import spread

    score = np.zeros((40, 40))
    score[:, :20] = 1.0  # class 0 (left) scores far higher everywhere
    score[:, 20:] = 0.1
    pred = np.zeros((40, 40), np.int64)
    pred[:, 20:] = 1
    picked = spread(score, pred, 6, min_distance=5.0)
    rows, cols = np.divmod(np.array(picked), 40)
    assert len(picked) == 6
    assert sorted(pred.ravel()[picked].tolist()) == [0, 0, 0, 1, 1, 1]  # 3 per class, not 6 on the best one
    d = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None]) + np.eye(6) * 99
    assert d.min() >= 5.0


@pytest.mark.slow
def test_cli_refuses_bad_n_in_one_line(tmp_path):
    proc = run_cli("suggest", "x.tif", "-c", "m.safetensors", "-o", tmp_path / "p.gpkg", "--n", "0")
    assert proc.returncode != 0 and "must be from 1 to 10000, not 0" in proc.stderr
