"""Band detection and mapping (issue 3, part 1) on real EnMAP and Landsat 8 crops."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
from conftest import FIXTURES, run_cli
from rasterio.transform import from_origin

from spectralx.bands import SENSORS, BandMapping, detect_bands, list_sensors, map_bands, parse_sensor, resolve_band_map
from spectralx.bands.sensors import canonical_band_name
from spectralx.bands.units import parse_envi_list, to_nm
from spectralx.checkpoint import Band
from spectralx.errors import BandMappingError

ENMAP = os.path.join(FIXTURES, "enmap_potsdam_tile_128_0.tif")
LANDSAT = os.path.join(FIXTURES, "landsat8_224078_crop64.tif")


def s2_bands(names=("B2", "B3", "B4", "B8")):
    s2 = SENSORS["sentinel2"]
    return [Band(n, s2.band(n).wavelength_nm, s2.band(n).fwhm_nm) for n in names]


def write_raster(path, count, descriptions=None, band_tags=None, envi=None, nodata=None, data=None):
    profile = dict(
        driver="GTiff",
        width=8,
        height=8,
        count=count,
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(0, 80, 10, 10),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((count, 8, 8), np.float32) if data is None else data)
        for i, d in enumerate(descriptions or [], 1):
            dst.set_band_description(i, d)
        for i, tags in enumerate(band_tags or [], 1):
            dst.update_tags(i, **tags)
        if envi:
            dst.update_tags(ns="ENVI", **envi)
    return str(path)


# ---- detection ----


def test_enmap_tile_has_224_wavelengths_with_fwhm():
    bands = detect_bands(ENMAP)
    assert len(bands) == 224
    wl = np.array([b.wavelength_nm for b in bands])
    assert wl[0] == pytest.approx(418.24) and wl.min() == wl[0]
    # two detectors: VNIR bands 1-91 up to 993 nm, SWIR bands 92-224 from 902 nm, each ascending
    assert np.all(np.diff(wl[:91]) > 0) and np.all(np.diff(wl[91:]) > 0) and wl[91] < wl[90]
    assert wl[-1] == pytest.approx(2445.53)
    assert all(b.fwhm_nm and 4 < b.fwhm_nm < 15 for b in bands)
    assert {b.source for b in bands} == {"metadata"}
    assert [b.index for b in bands if b.bad] == [130, 131, 132, 133, 134, 135]


def test_envi_domain_in_micrometres_is_read_in_nm(tmp_path):
    wl = [0.45, 0.55, 0.65, 0.86]
    path = write_raster(
        tmp_path / "envi.tif",
        4,
        envi={
            "wavelength": "{" + ", ".join(map(str, wl)) + "}",
            "fwhm": "{0.06, 0.05, 0.04, 0.03}",
            "wavelength_units": "Micrometers",
            "bbl": "{1, 1, 1, 0}",
        },
    )
    with rasterio.open(path) as ds:  # the tags really are in the ENVI domain of the file
        assert ds.tags(ns="ENVI")["wavelength_units"] == "Micrometers"
    bands = detect_bands(path)
    assert [b.wavelength_nm for b in bands] == pytest.approx([450, 550, 650, 860])
    assert [b.fwhm_nm for b in bands] == pytest.approx([60, 50, 40, 30])
    assert all(b.source == "ENVI metadata" for b in bands)
    assert [b.bad for b in bands] == [False, False, False, True]


def test_units_and_lists():
    assert to_nm(0.665, "Micrometers") == pytest.approx(665)
    assert to_nm(0.665, "µm") == pytest.approx(665) and to_nm(665, "Nanometers") == 665
    assert to_nm(1.61, None) == pytest.approx(1610)  # no units: magnitude says micrometres
    assert parse_envi_list("{ 0.45,0.55 , 0.65 }") == [0.45, 0.55, 0.65]


def test_gdal_band_metadata_in_micrometres(tmp_path):
    tags = [
        {"wavelength": "0.49", "wavelength_units": "um", "fwhm": "0.066"},
        {"wavelength": "0.56", "wavelength_units": "um", "fwhm": "0.036"},
    ]
    bands = detect_bands(write_raster(tmp_path / "m.tif", 2, band_tags=tags))
    assert [b.wavelength_nm for b in bands] == pytest.approx([490, 560])
    assert bands[0].fwhm_nm == pytest.approx(66)


@pytest.mark.parametrize(
    "text,name",
    [
        ("B4", "B4"),
        ("B04", "B4"),
        ("B8A", "B8A"),
        ("SR_B2", "B2"),
        ("Band 4 (red)", "B4"),
        ("band_8a", "B8A"),
        ("B4 aerosol", "B4"),
        ("Blue", None),
        ("NDVI", None),
    ],
)
def test_band_names(text, name):
    assert canonical_band_name(text) == name


def test_sentinel2_recognised_from_descriptions(tmp_path):
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
    bands = detect_bands(write_raster(tmp_path / "s2.tif", 12, descriptions=names))
    assert bands[8].wavelength_nm == pytest.approx(SENSORS["sentinel2"].band("B8A").wavelength_nm)
    assert bands[10].wavelength_nm == pytest.approx(SENSORS["sentinel2"].band("B11").wavelength_nm)
    assert bands[0].source.startswith("preset sentinel2")


def test_wavelength_in_description(tmp_path):
    bands = detect_bands(write_raster(tmp_path / "d.tif", 2, descriptions=["blue (490 nm)", "0.56 µm"]))
    assert [b.wavelength_nm for b in bands] == pytest.approx([490, 560])


def test_all_nodata_band_is_bad(tmp_path):
    data = np.ones((3, 8, 8), np.float32)
    data[1] = -9999
    bands = detect_bands(
        write_raster(
            tmp_path / "n.tif",
            3,
            nodata=-9999,
            data=data,
            envi={"wavelength": "{490, 560, 665}", "wavelength_units": "nm"},
        )
    )
    assert [b.bad for b in bands] == [False, True, False]
    m = map_bands(bands, [Band("G", 560.0, 36.0)], strategy="nearest", tolerance_nm=200)
    assert m.source_indexes != [2]


def test_landsat_without_metadata_needs_a_preset():
    bands = detect_bands(LANDSAT)
    assert all(b.wavelength_nm is None for b in bands)
    with pytest.raises(BandMappingError, match="--sensor"):
        map_bands(bands, s2_bands(("B2", "B3", "B4")))


def test_landsat_maps_through_oli_preset():
    bands = detect_bands(LANDSAT, sensor="landsat8")
    assert [b.wavelength_nm for b in bands] == pytest.approx([482.6, 561.3, 654.6])
    m = resolve_band_map(LANDSAT, s2_bands(("B2", "B3", "B4")), sensor="landsat8")
    assert m.source_indexes == [1, 2, 3]
    np.testing.assert_array_equal(m.weights, np.eye(3, dtype=np.float32))
    assert [r["strategy"] for r in m.rows] == ["nearest"] * 3
    assert all(0.5 < r["quality"] <= 1 for r in m.rows) and not any(m.fill)
    # the bands can also be named explicitly, in any order
    m2 = resolve_band_map(LANDSAT, s2_bands(("B2", "B3", "B4")), sensor="landsat8:B4,B3,B2")
    np.testing.assert_array_equal(m2.weights, np.eye(3, dtype=np.float32)[::-1])


def test_preset_follows_band_names_not_generic_names(tmp_path):
    named = write_raster(tmp_path / "bgr.tif", 3, descriptions=["Band 4 (red)", "Band 3 (green)", "Band 2 (blue)"])
    assert [b.wavelength_nm for b in detect_bands(named, sensor="landsat8")] == pytest.approx([654.6, 561.3, 482.6])
    generic = write_raster(tmp_path / "gen.tif", 3, descriptions=["Band 1", "Band 2", "Band 3"])
    bands = detect_bands(generic, sensor="landsat8")  # ENVI default names are positions, not B1-B3
    assert [b.wavelength_nm for b in bands] == pytest.approx([482.6, 561.3, 654.6])
    assert all(b.wavelength_nm is None for b in detect_bands(generic))  # and identify no sensor


def test_colour_named_bands_use_the_generic_preset(tmp_path):
    path = write_raster(tmp_path / "cam.tif", 4, descriptions=["Blue", "Green", "Red", "NIR"])
    bands = detect_bands(path)
    assert [b.wavelength_nm for b in bands] == pytest.approx([490, 560, 665, 842])
    assert bands[0].source.startswith("preset rgbn")
    assert [b.wavelength_nm for b in detect_bands(LANDSAT, sensor="rgb:B,G,R")] == pytest.approx([490, 560, 665])


def test_sensor_presets():
    assert {"sentinel2", "sentinel2a", "sentinel2b", "landsat8", "landsat9", "enmap", "rgbn"} <= {
        k for k, _ in list_sensors()
    }
    assert len(SENSORS["enmap"].bands) == 224
    sensor, chosen = parse_sensor("L8:B2,B3,B4")
    assert sensor.key == "landsat8" and [b.name for b in chosen] == ["B2", "B3", "B4"]
    with pytest.raises(BandMappingError, match="unknown sensor"):
        parse_sensor("spot99")
    with pytest.raises(BandMappingError, match="5 bands"):
        detect_bands(LANDSAT, sensor="landsat8:B2,B3,B4,B5,B6")


# ---- mapping ----


def test_unmappable_raster_lists_missing_wavelengths():
    with pytest.raises(BandMappingError) as err:
        resolve_band_map(LANDSAT, s2_bands(("B2", "B3", "B4", "B8", "B11")), sensor="landsat8")
    msg = str(err.value)
    assert "B8 (832.85 nm)" in msg and "B11 (1612.05 nm)" in msg and "B2 (" not in msg
    assert "--sensor" in msg and "--band-map" in msg and "--allow-fill" in msg and "\n" not in msg


def test_allow_fill_marks_missing_bands():
    m = resolve_band_map(LANDSAT, s2_bands(("B2", "B3", "B4", "B8")), sensor="landsat8", allow_fill=True)
    assert m.fill == [False, False, False, True]
    assert m.rows[3]["strategy"] == "fill" and m.rows[3]["quality"] == 0
    assert not m.weights[3].any()
    out = m.apply(np.ones((3, 2, 2)), fill_values=[0, 0, 0, 7.0])
    assert out.shape == (4, 2, 2) and out[3].max() == 7.0 and out[0].max() == 1.0


def test_srf_resampling_enmap_to_sentinel2_weights():
    targets = s2_bands(("B2", "B3", "B4", "B5", "B8A", "B11", "B12"))
    m = resolve_band_map(ENMAP, targets, band_map="srf")
    bands = {b.index: b for b in detect_bands(ENMAP)}
    np.testing.assert_allclose(m.weights.sum(axis=1), 1.0, atol=1e-5)
    assert (m.weights >= 0).all()
    assert not {130, 131, 132, 133, 134, 135} & set(m.source_indexes)  # bad bands never read
    for row, t in zip(m.weights, targets):
        peak = bands[m.source_indexes[int(np.argmax(row))]].wavelength_nm
        assert abs(peak - t.wavelength_nm) < 10, (t.name, peak)
        used = [bands[m.source_indexes[j]].wavelength_nm for j in np.nonzero(row)[0]]
        assert min(used) < t.wavelength_nm < max(used)  # spans the response
    assert all(r["strategy"] == "srf" and r["quality"] > 0.9 for r in m.rows)


def test_srf_reproduces_a_smooth_spectrum():
    """Resampling a spectrum that is linear in wavelength must give its value at each band centre."""
    targets = s2_bands(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8A", "B11"))
    m = resolve_band_map(ENMAP, targets, band_map="srf")
    wl = {b.index: b.wavelength_nm for b in detect_bands(ENMAP)}
    spectrum = np.array([0.1 + 0.0002 * wl[i] for i in m.source_indexes], np.float32)
    expected = [0.1 + 0.0002 * t.wavelength_nm for t in targets]
    np.testing.assert_allclose(m.apply(spectrum), expected, atol=0.0002 * 1)  # within 1 nm
    assert "6 bad raster band(s) not used: 130-135" in m.warnings


def test_auto_picks_srf_for_hyperspectral_and_nearest_for_similar():
    m = resolve_band_map(ENMAP, s2_bands(("B2", "B4", "B5", "B8")))
    assert [r["strategy"] for r in m.rows] == ["srf"] * 4
    m = resolve_band_map(LANDSAT, s2_bands(("B2", "B4")), sensor="landsat8")
    assert [r["strategy"] for r in m.rows] == ["nearest", "nearest"]


def test_interpolation_between_neighbours():
    src = detect_bands(LANDSAT, sensor="landsat8")  # 482.6, 561.3, 654.6 nm
    m = map_bands(src, [Band("mid", 608.0, 10.0)], strategy="auto")
    assert m.rows[0]["strategy"] == "interpolate"
    w = dict(zip(m.source_indexes, m.weights[0]))
    assert w[2] == pytest.approx((654.6 - 608) / (654.6 - 561.3), abs=1e-5)
    assert w[3] == pytest.approx((608 - 561.3) / (654.6 - 561.3), abs=1e-5)
    assert 0 < m.rows[0]["quality"] < 0.6


def test_checkpoint_training_sensor_is_the_default():
    from types import SimpleNamespace

    card = SimpleNamespace(bands=s2_bands(("B2", "B3", "B4")), training={"sensor": "landsat8"})
    m = resolve_band_map(LANDSAT, card)
    assert m.source_indexes == [1, 2, 3] and m.sensor == "landsat8" and "training sensor" in m.warnings[0]


def test_index_strategy_and_tolerance():
    src = detect_bands(LANDSAT, sensor="landsat8")
    m = map_bands(src, s2_bands(("B2", "B3")), strategy="index")
    assert m.source_indexes == [1, 2] and m.rows[0]["strategy"] == "index"
    with pytest.raises(BandMappingError, match="B4"):
        map_bands(src, s2_bands(("B4",)), strategy="nearest", tolerance_nm=5)


# ---- JSON ----


def test_json_round_trip_and_resolve_accepts_it(tmp_path):
    targets = s2_bands(("B2", "B3", "B4", "B8"))
    m = resolve_band_map(ENMAP, targets)
    back = BandMapping.from_json(m.to_json())
    assert back.source_indexes == m.source_indexes and back.fill == m.fill and back.rows == m.rows
    np.testing.assert_allclose(back.weights, m.weights, atol=1e-6)
    assert BandMapping.from_json(m.to_dict()).source_indexes == m.source_indexes
    path = tmp_path / "map.json"
    path.write_text(m.to_json())
    again = resolve_band_map(ENMAP, targets, band_map=str(path))
    np.testing.assert_allclose(again.weights, m.weights, atol=1e-6)
    assert resolve_band_map(ENMAP, targets, band_map=json.loads(m.to_json())).source_indexes == m.source_indexes


def test_stored_map_is_validated(tmp_path):
    targets = s2_bands(("B2", "B3", "B4", "B8"))
    doc = resolve_band_map(ENMAP, targets).to_dict()
    with pytest.raises(BandMappingError, match="raster has 3 bands"):
        resolve_band_map(LANDSAT, targets, band_map=doc)
    with pytest.raises(BandMappingError, match="checkpoint expects 3"):
        resolve_band_map(ENMAP, targets[:3], band_map=doc)
    with pytest.raises(BandMappingError, match="does not match checkpoint band"):
        resolve_band_map(ENMAP, s2_bands(("B2", "B3", "B4", "B11")), band_map=doc)
    for broken in ({"rows": 3}, {"rows": [{}], "source_indexes": [1], "weights": [[1, 2]]}):
        with pytest.raises(BandMappingError, match="band map"):
            BandMapping.from_json(broken)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BandMappingError, match="not valid JSON|cannot read"):
        resolve_band_map(ENMAP, targets, band_map=str(bad))
    with pytest.raises(BandMappingError, match="neither a file"):
        resolve_band_map(ENMAP, targets, band_map=str(tmp_path / "missing.json"))


def test_edited_map_with_bare_source_numbers():
    """The dock edits a saved map: bare band numbers in rows, an unused column left in the matrix."""
    targets = s2_bands(("B2", "B3"))
    d = resolve_band_map(LANDSAT, targets, sensor="landsat8").to_dict()
    d.update(source_indexes=[1, 2, 3], weights=[[0, 0, 1], [0, 1, 0]])
    d["rows"][0]["sources"] = [3]
    m = resolve_band_map(LANDSAT, targets, band_map=d)
    assert m.source_indexes == [2, 3] and m.weights.tolist() == [[0, 1], [1, 0]]
    assert m.rows[0]["sources"] == [{"index": 3, "weight": 1.0}]


def test_hand_written_index_maps():
    targets = s2_bands(("B2", "B3", "B4"))
    m = resolve_band_map(LANDSAT, targets, band_map=[3, 2, None])
    assert m.source_indexes == [2, 3] and m.fill == [False, False, True]
    m = resolve_band_map(LANDSAT, targets, band_map={"B2": 1, "B3": 2, "B4": 3})
    np.testing.assert_array_equal(m.weights, np.eye(3, dtype=np.float32))
    with pytest.raises(BandMappingError, match="raster band 9"):
        resolve_band_map(LANDSAT, targets, band_map=[1, 2, 9])
    with pytest.raises(BandMappingError, match="not checkpoint bands"):
        resolve_band_map(LANDSAT, targets, band_map={"B2": 1, "B3": 2, "NIR": 3})
    with pytest.raises(BandMappingError, match="detection output"):
        resolve_band_map(LANDSAT, targets, band_map={"bands": [b.to_dict() for b in detect_bands(LANDSAT)]})


# ---- CLI ----


@pytest.mark.slow
def test_cli_detected_table(capsys):
    proc = run_cli("bands", ENMAP, check=True)  # the real entry point, once
    assert "418.2" in proc.stdout and "2445.5" in proc.stdout and "bbl=0" in proc.stdout
    from spectralx.cli import main  # the rest in-process: faster

    assert main(["bands", LANDSAT, "--sensor", "landsat8", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [b["wavelength_nm"] for b in doc["bands"]] == pytest.approx([482.6, 561.3, 654.6])
    assert main(["bands", LANDSAT]) == 0
    assert "--sensor" in capsys.readouterr().out  # no wavelengths: says what to do


@pytest.mark.slow
def test_cli_mapping_with_checkpoint(make_checkpoint, tmp_path, capsys):
    ckpt = make_checkpoint(wavelengths=(490.0, 560.0, 665.0))
    out = tmp_path / "map.json"
    proc = run_cli("bands", LANDSAT, "-c", ckpt, "--sensor", "landsat8", "-o", out, check=True)
    assert "nearest" in proc.stdout and "quality" in proc.stdout.lower()
    m = BandMapping.from_json(out.read_text())
    assert m.source_indexes == [1, 2, 3]
    from spectralx.cli import main

    assert main(["bands", LANDSAT, "-c", ckpt, "--band-map", str(out), "--json"]) == 0
    assert BandMapping.from_json(capsys.readouterr().out).source_indexes == [1, 2, 3]
    # a raster without red (B2, B3, B5): 665 nm is too far from 561 and 865 nm to interpolate
    assert main(["bands", LANDSAT, "-c", ckpt, "--sensor", "landsat8:B2,B3,B5"]) == 2
    err = capsys.readouterr().err
    assert "B3 (665 nm)" in err and "--allow-fill" in err and "Traceback" not in err
    assert main(["bands", LANDSAT, "-c", ckpt, "--sensor", "landsat8:B2,B3,B5", "--allow-fill"]) == 0
    assert "fill" in capsys.readouterr().out


# ---- more file conventions ----


def test_envi_format_file_gets_fwhm_from_header(tmp_path):
    profile = dict(
        driver="ENVI",
        width=4,
        height=4,
        count=3,
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(0, 40, 10, 10),
    )
    path = str(tmp_path / "img.bsq")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((3, 4, 4), np.float32))
        dst.update_tags(
            ns="ENVI", wavelength="{0.45, 0.55, 0.65}", fwhm="{0.05, 0.05, 0.04}", wavelength_units="Micrometers"
        )
    assert "wavelength units = Micrometers" in (tmp_path / "img.hdr").read_text()
    bands = detect_bands(path)
    assert [b.wavelength_nm for b in bands] == pytest.approx([450, 550, 650])
    assert [b.fwhm_nm for b in bands] == pytest.approx([50, 50, 40])


def test_band_metadata_without_units_uses_the_centre_magnitude(tmp_path):
    tags = [{"wavelength": "490", "fwhm": "7"}, {"WAVELENGTH": "0.56", "FWHM": "0.036"}]
    bands = detect_bands(write_raster(tmp_path / "u.tif", 2, band_tags=tags))
    assert [b.wavelength_nm for b in bands] == pytest.approx([490, 560])
    assert [b.fwhm_nm for b in bands] == pytest.approx([7, 36])


def test_units_given_once_for_the_dataset(tmp_path):
    tags = [{"wavelength": "25"}, {"wavelength": "26"}]  # would read as µm by magnitude alone
    path = write_raster(tmp_path / "ds_units.tif", 2, band_tags=tags)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(wavelength_units="Nanometers")
    assert [b.wavelength_nm for b in detect_bands(path)] == pytest.approx([25, 26])


def test_sentinel2_recognised_from_dataset_tags(tmp_path):
    path = write_raster(tmp_path / "s2b.tif", 4)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(SPACECRAFT_NAME="Sentinel-2B")
    bands = detect_bands(path)
    assert [b.name.split()[0] for b in bands] == ["B2", "B3", "B4", "B8"]
    assert bands[3].wavelength_nm == pytest.approx(832.9)
    assert "assumed" in bands[0].source  # a subset layout is an assumption, and says so


def test_enmap_recognised_by_band_count(tmp_path):
    path = write_raster(tmp_path / "hsi.tif", 224)
    bands = detect_bands(path)
    assert bands[0].wavelength_nm == pytest.approx(418.24) and bands[0].source == "preset enmap"
    assert [b.index for b in bands if b.bad] == [130, 131, 132, 133, 134, 135]


def test_large_raster_nodata_is_sampled(tmp_path, monkeypatch):
    import spectralx.bands.detect as detect

    monkeypatch.setattr(detect, "_FULL_READ_LIMIT", 0)
    monkeypatch.setattr(detect, "_SAMPLE_SIDE", 2)
    data = np.ones((2, 8, 8), np.float32)
    data[1] = -1
    bands = detect_bands(write_raster(tmp_path / "big.tif", 2, nodata=-1, data=data, envi={"wavelength": "{490, 560}"}))
    assert [b.bad for b in bands] == [False, True] and "sampled" in bands[1].note
    data[:] = -1  # nothing valid anywhere: flag nothing
    bands = detect_bands(
        write_raster(tmp_path / "empty.tif", 2, nodata=-1, data=data, envi={"wavelength": "{490, 560}"})
    )
    assert not any(b.bad for b in bands)


def test_hyperspectral_checkpoint_from_enmap_is_exact():
    src = detect_bands(ENMAP)
    targets = [Band(f"b{b.index}", b.wavelength_nm, b.fwhm_nm) for b in src if not b.bad]
    m = map_bands(src, targets)
    assert all(r["strategy"] == "nearest" and r["quality"] == 1.0 for r in m.rows)
    assert len(m.source_indexes) == 218 and np.array_equal(m.weights, np.eye(218, dtype=np.float32))
