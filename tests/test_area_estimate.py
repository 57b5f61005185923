"""Accuracy and area estimators (spectralx.area_estimate) against the worked example of Olofsson et al.
(2014), Remote Sensing of Environment 148, 42-57, Section 5, and a coverage property on a synthetic map."""
from __future__ import annotations

import numpy as np
import pytest

from spectralx.area_estimate import estimate
from spectralx.errors import LabelError
from spectralx.sampling import sample_size

# Olofsson et al. 2014, Table 8: error matrix of sample counts (rows = map, columns = reference) for the
# classes deforestation, forest gain, stable forest, stable non-forest; mapped areas in 30 m pixels
# (0.09 ha each) from the same section (18 000, 13 500, 288 000 and 580 500 ha mapped).
COUNTS = [[66, 0, 5, 4],
          [0, 55, 8, 12],
          [1, 0, 153, 11],
          [2, 1, 9, 313]]
PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
NAMES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]

# Table 9: the same matrix in estimated area proportions, to the 4 decimals printed there
TABLE9 = [[0.0176, 0.0000, 0.0013, 0.0011],
          [0.0000, 0.0110, 0.0016, 0.0024],
          [0.0019, 0.0000, 0.2967, 0.0213],
          [0.0040, 0.0020, 0.0179, 0.6212]]
TABLE9_COLUMN_TOTALS = [0.0235, 0.0130, 0.3175, 0.6460]
# Section 5: error-adjusted areas (ha) ± their 95 % confidence intervals, as printed (whole hectares)
AREAS_HA = [(21_158, 6_158), (11_686, 3_756), (285_770, 15_510), (581_386, 16_282)]
# Section 5: accuracies as printed (2 decimals)
USERS = [0.88, 0.73, 0.93, 0.96]
USERS_CI = [0.07, 0.10, 0.04, 0.02]
PRODUCERS = [0.75, 0.85, 0.93, 0.96]
OVERALL, OVERALL_CI = 0.95, 0.02


@pytest.fixture(scope="module")
def paper():
    return estimate(COUNTS, PIXELS, NAMES, pixel_area_ha=0.09)


def test_olofsson_2014_table9_area_proportions(paper):
    p = np.array(paper["error_matrix_proportions"])
    assert np.round(p, 4).tolist() == TABLE9
    assert np.round(p.sum(axis=0), 4).tolist() == TABLE9_COLUMN_TOTALS
    assert [round(c["mapped_proportion"], 3) for c in paper["classes"]] == [0.020, 0.015, 0.320, 0.645]


def test_olofsson_2014_error_adjusted_areas_and_intervals(paper):
    got = [(round(c["area_ha"]["estimate"]), round(c["area_ha"]["ci95"])) for c in paper["classes"]]
    assert got == AREAS_HA
    defo = paper["classes"][0]
    assert defo["mapped_area_ha"] == pytest.approx(18_000)
    assert round(defo["area_proportion"]["se"], 4) == 0.0035     # S(p_.1) in the text
    # the interval is estimate ± 1.96 SE, in pixels as in hectares
    assert defo["area_pixels"]["ci95"] * 0.09 == pytest.approx(defo["area_ha"]["ci95"])
    assert defo["area_ha"]["low"] == pytest.approx(21_158 - 6_158, abs=1)


def test_olofsson_2014_accuracies(paper):
    assert [round(c["users_accuracy"]["estimate"], 2) for c in paper["classes"]] == USERS
    assert [round(c["users_accuracy"]["ci95"], 2) for c in paper["classes"]] == USERS_CI
    assert [round(c["producers_accuracy"]["estimate"], 2) for c in paper["classes"]] == PRODUCERS
    assert round(paper["overall_accuracy"]["estimate"], 2) == OVERALL
    assert round(paper["overall_accuracy"]["ci95"], 2) == OVERALL_CI
    # producer's interval of deforestation (eq. 7): wide because stable non-forest is a large stratum
    assert paper["classes"][0]["producers_accuracy"]["ci95"] == pytest.approx(0.21, abs=0.005)


def test_olofsson_2014_sample_size_formula():
    """Section 5.1: target SE 0.01 for overall accuracy, expected user's accuracies 0.7, 0.6, 0.9, 0.95
    with the mapped shares above -> n ≈ 641 (eq. 13)."""
    w = np.array(PIXELS) / sum(PIXELS)
    assert sample_size(w, [0.7, 0.6, 0.9, 0.95], 0.01) == 641
    assert sample_size(w, [0.7, 0.6, 0.9, 0.95], 0.02) == 161      # a quarter for twice the SE


def test_every_mapped_class_needs_two_points():
    counts = [[10, 0], [0, 1]]
    with pytest.raises(LabelError, match="map class b covers 50 px but has only one reference point"):
        estimate(counts, [100, 50], ["a", "b"])
    with pytest.raises(LabelError, match="has no reference point"):
        estimate([[10, 0], [0, 0]], [100, 50], ["a", "b"])


def test_class_never_mapped_has_area_but_no_users_accuracy():
    r = estimate([[8, 2, 0], [1, 9, 0], [0, 0, 0]], [600, 400, 0], ["a", "b", "c"])
    c = r["classes"][2]
    assert c["users_accuracy"]["estimate"] is None and c["producers_accuracy"]["estimate"] is None
    assert c["area_pixels"]["estimate"] == 0.0
    r = estimate([[8, 1, 1], [1, 9, 0], [0, 0, 0]], [600, 400, 0], ["a", "b", "c"])
    assert r["classes"][2]["area_pixels"]["estimate"] == pytest.approx(60.0)     # 600 px x 1/10
    assert r["classes"][2]["producers_accuracy"]["estimate"] == 0.0


def test_intervals_cover_the_true_areas_95_percent():
    """Synthetic map with known truth (3 classes, 60 000 pixels, known confusion), 200 stratified samples
    of 100 + 150 + 250 points: each class's 95 % interval covers its true area in about 95 % of them."""
    rng = np.random.default_rng(20140215)
    mapped = np.repeat([1, 2, 3], [6_000, 18_000, 36_000])
    truth = mapped.copy()
    confusion = {1: [0.80, 0.15, 0.05], 2: [0.04, 0.90, 0.06], 3: [0.02, 0.05, 0.93]}
    for m, probs in confusion.items():
        idx = np.flatnonzero(mapped == m)
        truth[idx] = rng.choice([1, 2, 3], size=len(idx), p=probs)
    true_area = np.array([(truth == k).sum() for k in (1, 2, 3)], float)
    true_oa = (truth == mapped).mean()
    strata = {k: np.flatnonzero(mapped == k) for k in (1, 2, 3)}
    n_h = {1: 100, 2: 150, 3: 250}
    covered = np.zeros(3)
    covered_oa = 0
    runs = 200
    for _ in range(runs):
        counts = np.zeros((3, 3), int)
        for k, idx in strata.items():
            pick = rng.choice(idx, size=n_h[k], replace=False)
            counts[k - 1] = np.bincount(truth[pick] - 1, minlength=3)
        r = estimate(counts, [6_000, 18_000, 36_000], ["1", "2", "3"])
        for j, c in enumerate(r["classes"]):
            covered[j] += c["area_pixels"]["low"] <= true_area[j] <= c["area_pixels"]["high"]
        oa = r["overall_accuracy"]
        covered_oa += oa["low"] <= true_oa <= oa["high"]
    rate = covered / runs
    # binomial spread of 200 runs at 0.95: sd 0.015; a wrong variance (unweighted, or no W^2) lands far outside
    assert np.all(rate >= 0.90) and np.all(rate <= 0.99), rate
    assert 0.90 <= covered_oa / runs <= 0.99
