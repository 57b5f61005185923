"""Accuracy and area estimators (spectralx.area_estimate) against the worked example of Olofsson et al.
(2014), Remote Sensing of Environment 148, 42-57, Section 5, and a coverage property on a synthetic map."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import run_cli

from spectralx.area_estimate import estimate
from spectralx.errors import LabelError
from spectralx.sampling import sample_size

# Olofsson et al. 2014, Table 8: error matrix of sample counts (rows = map, columns = reference) for the
# classes deforestation, forest gain, stable forest, stable non-forest; mapped areas in 30 m pixels
# (0.09 ha each) from the same section (18 000, 13 500, 288 000 and 580 500 ha mapped).
COUNTS = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
NAMES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]

# Table 9: the same matrix in estimated area proportions, to the 4 decimals printed there
TABLE9 = [
    [0.0176, 0.0000, 0.0013, 0.0011],
    [0.0000, 0.0110, 0.0016, 0.0024],
    [0.0019, 0.0000, 0.2967, 0.0213],
    [0.0040, 0.0020, 0.0179, 0.6212],
]
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
    assert round(defo["area_proportion"]["se"], 4) == 0.0035  # S(p_.1) in the text
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
    assert sample_size(w, [0.7, 0.6, 0.9, 0.95], 0.02) == 161  # a quarter for twice the SE


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
    assert r["classes"][2]["area_pixels"]["estimate"] == pytest.approx(60.0)  # 600 px x 1/10
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


# --- from a map and reference points: `spectralx evaluate MAP --reference POINTS --class-field F --area` --


def _paper_map_and_points(tmp_path, crs_points=None, transform_points=None, edit=None):
    """A 100 x 100 map with the paper's class shares (200, 150, 3200, 6450 px) and 640 points laid out
    as Table 8 (stratum = map class, reference = the table's column)."""
    import rasterio
    from rasterio.transform import from_origin

    from spectralx.checkpoint import ClassInfo
    from spectralx.outputs import open_class_raster
    from spectralx.vector_io import write_points

    flat = np.repeat([1, 2, 3, 4], [200, 150, 3200, 6450]).astype(np.uint8)
    data = flat.reshape(100, 100)
    classes = [
        ClassInfo(i + 1, n, c) for i, (n, c) in enumerate(zip(NAMES, ["#ff0000", "#00ff00", "#006400", "#ffff99"]))
    ]
    transform = from_origin(600_000, 4_500_000, 30, 30)
    path = str(tmp_path / "map.tif")
    with open_class_raster(path, 100, 100, "EPSG:32619", transform, classes) as ds:
        ds.write(data, 1)
    rows, cols, strata, refs = [], [], [], []
    for i, counts in enumerate(COUNTS):
        cells = np.flatnonzero(flat == i + 1)[: sum(counts)]
        r, c = np.divmod(cells, 100)
        rows += r.tolist()
        cols += c.tolist()
        strata += [i + 1] * len(cells)
        refs += [j + 1 for j, k in enumerate(counts) for _ in range(k)]
    xs = [transform.c + (c + 0.5) * 30 for c in cols]
    ys = [transform.f - (r + 0.5) * 30 for r in rows]
    wkt = rasterio.crs.CRS.from_epsg(32619).to_wkt()
    if crs_points:
        from rasterio.warp import transform as warp

        xs, ys = warp("EPSG:32619", crs_points, xs, ys)
        wkt = rasterio.crs.CRS.from_string(crs_points).to_wkt()
    fields = {"stratum": strata, "truth": [NAMES[r - 1] for r in refs], "code": refs}
    if edit:
        edit(xs, ys, fields)
    points = str(tmp_path / "points.gpkg")
    write_points(points, xs, ys, fields, wkt)
    return path, points


@pytest.mark.slow
def test_evaluate_area_reproduces_the_paper_from_a_map_and_points(tmp_path):
    path, points = _paper_map_and_points(tmp_path)
    proc = run_cli("evaluate", path, "--reference", points, "--class-field", "truth", "--area")
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "points_report.json"
    result = json.loads(report.read_text())
    assert result["design"] == "stratified" and result["sample_size"] == 640
    assert result["error_matrix_counts"] == COUNTS
    assert np.round(result["error_matrix_proportions"], 4).tolist() == TABLE9
    assert [round(c["users_accuracy"]["estimate"], 2) for c in result["classes"]] == USERS
    assert [round(c["producers_accuracy"]["estimate"], 2) for c in result["classes"]] == PRODUCERS
    # 0.09 ha pixels, 10 000 of them: the paper's proportions x 900 ha
    assert result["pixel_area_ha"] == pytest.approx(0.09)
    assert round(result["classes"][0]["area_ha"]["estimate"], 3) == round(0.0235086247 * 900, 3)
    assert "overall accuracy 0.947 ± 0.018" in proc.stdout
    html = (tmp_path / "points_report.html").read_text()
    assert "Overall accuracy: 0.947 ± 0.018" in html and "data:image/png;base64," in html
    png = (tmp_path / "points_report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # class values work as well as names; the same numbers
    again = run_cli(
        "evaluate", path, "--reference", points, "--class-field", "code", "--area", "-o", tmp_path / "codes.json"
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "codes.json").read_text())["classes"] == result["classes"]


@pytest.mark.slow
def test_evaluate_area_reprojects_points_in_another_crs(tmp_path):
    path, points = _paper_map_and_points(tmp_path, crs_points="EPSG:4326")
    proc = run_cli("evaluate", path, "--reference", points, "--class-field", "truth", "--area", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])
    assert result["error_matrix_counts"] == COUNTS
    assert "reference points reprojected to the map's CRS" in result["notes"]


@pytest.mark.slow
def test_evaluate_area_simple_design_uses_map_classes_as_post_strata(tmp_path):
    """Points without a stratum (a simple random sample): `auto` picks the simple design; the estimator is
    the same with the map classes as post-strata, so the same counts give the same numbers."""
    path, points = _paper_map_and_points(tmp_path, edit=lambda xs, ys, fields: fields.pop("stratum"))
    proc = run_cli("evaluate", path, "--reference", points, "--class-field", "code", "--area")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "points_report.json").read_text())
    assert result["design"] == "simple" and "post-strata" in result["method"]
    assert [round(c["users_accuracy"]["estimate"], 2) for c in result["classes"]] == USERS
    forced = run_cli(
        "evaluate",
        path,
        "--reference",
        points,
        "--class-field",
        "code",
        "--area",
        "--design",
        "stratified",
        "-o",
        tmp_path / "s.json",
    )
    assert forced.returncode == 2 and "has no 'stratum' field" in forced.stderr


def _bad(case):
    def edit(xs, ys, fields):
        if case == "unknown_class":
            fields["truth"][5] = "wetland"
        elif case == "outside":
            xs[3] -= 1e5
        elif case == "other_strata":
            fields["stratum"][0] = 4
        elif case == "empty_stratum":  # every stratum-2 point gone: 150 mapped px without a point
            keep = [i for i, s in enumerate(fields["stratum"]) if s != 2]
            xs[:] = [xs[i] for i in keep]
            ys[:] = [ys[i] for i in keep]
            for k in fields:
                fields[k] = [fields[k][i] for i in keep]
        elif case == "unlabelled":
            fields["truth"] = [None] * len(fields["truth"])

    return edit


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, expect",
    [
        ("unknown_class", "reference class 'wetland' in field 'truth'"),
        ("outside", "1 reference points lie outside the map"),
        ("other_strata", "have a stratum other than the map class under them"),
        ("empty_stratum", "map class 2 forest gain covers 150 px but has no reference point"),
        ("unlabelled", "has a reference class in 'truth' yet"),
        ("no_field", "the class field 'label' is not in"),
        ("exists", "already exists"),
    ],
)
def test_evaluate_area_bad_input_is_one_line_and_writes_nothing(tmp_path, case, expect):
    path, points = _paper_map_and_points(tmp_path, edit=_bad(case))
    field = "label" if case == "no_field" else "truth"
    if case == "exists":
        (tmp_path / "points_report.html").write_text("mine")
    before = sorted(os.listdir(tmp_path))
    proc = run_cli("evaluate", path, "--reference", points, "--class-field", field, "--area")
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, no temporary file left
