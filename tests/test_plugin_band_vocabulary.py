"""The one band-mapping vocabulary the CLI, Processing and the dock share (spectralx.bands): the sensor
spec, advice worded per audience, the can-this-model-fit verdict, the picker's pre-fill, and rows
chosen by hand through the engine's own quality formula."""

from __future__ import annotations

import os

import pytest
from test_plugin_common import FIXTURES, REPO

LANDSAT_L1 = os.path.join(FIXTURES, "landsat8_224078_nowavelengths.tif")
LANDSAT_NAMED = os.path.join(FIXTURES, "training_landsat8_224078.tif")  # descriptions B2, B3, B4
ENMAP_MODEL = os.path.join(REPO, "resources", "models", "demo.safetensors")


def _s2(names):
    from spectralx.bands import SENSORS
    from spectralx.checkpoint import Band

    s2 = SENSORS["sentinel2"]
    return [Band(n, s2.band(n).wavelength_nm, s2.band(n).fwhm_nm) for n in names]


def test_no_wavelengths_advice_per_audience():
    from spectralx.bands import explain, plan_bands

    plan = plan_bands(LANDSAT_L1, _s2(("B2", "B3", "B4")))
    assert not plan.ok and plan.verdict is None
    cli, dock, processing = (explain(plan.error, a) for a in ("cli", "dock", "processing"))
    assert str(plan.error) == cli and "--sensor (e.g. landsat8:B2,B3,B4)" in cli and "--band-map" in cli
    assert "Sensor picker" in dock and "Load band map" in dock and "--" not in dock
    assert "SENSOR parameter (e.g. landsat8:B2,B3,B4)" in processing and "BAND_MAP" in processing
    assert "--" not in processing


def test_sensor_spec_maps_the_level1_file():
    from spectralx.bands import plan_bands

    plan = plan_bands(LANDSAT_L1, _s2(("B2", "B3", "B4")), sensor="landsat8:B2,B3,B4")
    assert plan.ok and plan.error is None
    assert plan.mapping.source_indexes == [1, 2, 3]
    assert [r["strategy"] for r in plan.mapping.rows] == ["nearest"] * 3
    assert [b.wavelength_nm for b in plan.raster_bands] == [482.6, 561.3, 654.6]


def test_verdict_when_the_model_cannot_fit():
    from spectralx.bands import ModelDoesNotFit, explain, fit_verdict, plan_bands, resolve_band_map
    from spectralx.checkpoint import read_card

    card = read_card(ENMAP_MODEL)
    plan = plan_bands(LANDSAT_L1, card, sensor="landsat8")
    assert isinstance(plan.error, ModelDoesNotFit)
    assert plan.verdict == (
        "this model needs 218 EnMAP HSI bands 418–2446 nm; this raster has 3 visible bands "
        "(483–655 nm), covering 42 of them: fine-tune a new model from this raster instead"
    )
    assert explain(plan.error, "dock") == explain(plan.error, "cli") == plan.verdict
    with pytest.raises(ModelDoesNotFit):  # the CLI's path says the same
        resolve_band_map(LANDSAT_L1, card, sensor="landsat8")
    # a raster that covers most of a model's bands gets the ordinary, fixable message instead
    assert fit_verdict(_s2(("B2", "B3", "B4", "B8")), plan.raster_bands) is None


def test_picker_prefill_from_descriptions_and_layouts():
    from spectralx.bands import default_order, detect_bands, sensor_spec, suggest_sensor

    assert suggest_sensor(detect_bands(LANDSAT_L1)) == (None, "")  # 'band 1' names nothing
    assert suggest_sensor(detect_bands(LANDSAT_NAMED)) == (None, "B2,B3,B4")  # 3 bands: sensor ambiguous
    assert default_order("landsat8", 3) == "B2,B3,B4"
    assert default_order("landsat5", 6) == "B1,B2,B3,B4,B5,B7"
    assert default_order("sentinel2", 4) == "B2,B3,B4,B8"
    assert default_order("landsat8", 5) == ""
    assert sensor_spec("landsat8", " B2, B3,B4 ") == "landsat8:B2,B3,B4" and sensor_spec(None, "B2") is None


def test_row_chosen_by_hand_uses_the_index_quality_formula():
    from spectralx.bands import detect_bands, map_bands
    from spectralx.bands.mapping import override_rows

    raster = detect_bands(LANDSAT_NAMED)
    targets = _s2(("B2", "B3", "B4"))
    auto = map_bands(raster, targets)
    by_hand = override_rows(auto, {1: 3}, raster, targets)  # green read from the red band
    reference = map_bands(raster, targets, strategy="index", indexes=[1, 3, 3])
    assert by_hand.rows[1]["quality"] == reference.rows[1]["quality"] < 0.3
    assert by_hand.rows[1]["note"].startswith("chosen by hand")
    assert by_hand.rows[0] == auto.rows[0]
    assert by_hand.source_indexes == [1, 3] and by_hand.weights[1].tolist() == [0.0, 1.0]
