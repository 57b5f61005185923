"""Regression tests of the reliability sweep (issue 13), one per cause, through the real CLI.

Each case asserts the exit code, the one-line `spectralx: error: …` message, that no file was left
behind and that every input is byte-identical afterwards. Most run `spectralx.cli.main` in this
process (no interpreter start per case); signals and pipes need a real subprocess.
Full-disk cases use a real small tmpfs (root only, else skipped with the reason).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
import torch
from conftest import FIXTURES
from rasterio.transform import from_origin

WAVELENGTHS = (480.0, 560.0, 660.0)
IMAGE = os.path.join(FIXTURES, "training_landsat8_224078.tif")


# --- helpers -------------------------------------------------------------------------------------


def cli(capsys, *args):
    """Run `spectralx ARGS` in-process; (exit code, stdout, stderr)."""
    from spectralx.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --help or a bad argument
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles, code=2):
    assert rc == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spectralx: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n.lower() in err.lower(), (n, err)


def digest(*paths):
    out = {}
    for p in paths:
        with open(p, "rb") as f:
            out[str(p)] = hashlib.sha256(f.read()).hexdigest()
    return out


def listing(*folders):
    return {str(f): sorted(os.listdir(f)) for f in folders}


def write_raster(path, bands=3, h=48, w=40, dtype="int16", wavelengths=WAVELENGTHS, seed=0, tags=None):
    rng = np.random.default_rng(seed)
    data = (1000 + 300 * rng.standard_normal((bands, h, w))).astype(dtype)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=bands,
        dtype=dtype,
        crs="EPSG:32633",
        transform=from_origin(500000.0, 5800000.0, 30.0, 30.0),
    ) as ds:
        ds.write(data)
        for i in range(1, bands + 1):
            wl = (tags or {}).get(i, wavelengths[(i - 1) % len(wavelengths)] if wavelengths else None)
            if wl is not None:
                ds.update_tags(i, wavelength=str(wl), wavelength_units="Nanometers", fwhm="20")
    return str(path)


def write_classes(path, h=48, w=40, values=(1, 2, 3), seed=0, count=1, dtype="uint8", like=None):
    rng = np.random.default_rng(seed)
    crs, transform = "EPSG:32633", from_origin(500000.0, 5800000.0, 30.0, 30.0)
    if like:
        with rasterio.open(like) as src:
            crs, transform, h, w = src.crs, src.transform, src.height, src.width
    data = rng.choice(np.array(values), size=(count, h, w)).astype(dtype)
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=count, dtype=dtype, crs=crs, transform=transform, nodata=0
    ) as ds:
        ds.write(data)
    return str(path)


def write_sparse_labels(path):
    """A few labelled blocks (two per class) on the training image's grid: a quick fine-tune."""
    with rasterio.open(IMAGE) as src:
        crs, transform, h, w = src.crs, src.transform, src.height, src.width
    data = np.zeros((h, w), np.uint8)
    for value, (r, c) in ((1, (10, 10)), (1, (100, 150)), (2, (60, 60)), (2, (200, 30))):
        data[r : r + 12, c : c + 12] = value
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=crs, transform=transform, nodata=0
    ) as ds:
        ds.write(data, 1)
    return str(path)


@pytest.fixture(scope="module")
def model_folder(tiny_backbone, tmp_path_factory):
    """One tiny 3-band checkpoint beside a copy of its backbone, made once for the module."""
    import shutil

    from spectralx.checkpoint import Band, ClassInfo, new_model, save_checkpoint

    folder = tmp_path_factory.mktemp("model")
    backbone = folder / os.path.basename(tiny_backbone)
    shutil.copy(tiny_backbone, backbone)
    torch.manual_seed(0)
    model, card = new_model(
        str(backbone),
        [Band(f"B{i + 1}", w, 20.0) for i, w in enumerate(WAVELENGTHS)],
        [ClassInfo(1, "water", "#1f78b4"), ClassInfo(2, "crop", "#33a02c"), ClassInfo(3, "tree", "#e31a1c")],
        img_size=64,
    )
    save_checkpoint(model, card, str(folder / "model.safetensors"))
    return folder


@pytest.fixture
def copy_checkpoint(model_folder, tmp_path):
    """Factory: a private copy of the module's checkpoint folder (tests may damage it)."""
    import shutil

    def copy(name="model"):
        folder = tmp_path / name
        shutil.copytree(model_folder, folder)
        return str(folder / "model.safetensors")

    return copy


@pytest.fixture
def scene(tmp_path):
    """A 3-band scene with wavelengths, a class raster and a reference on its grid."""
    folder = tmp_path / "in"
    folder.mkdir()
    return {
        "raster": write_raster(folder / "scene.tif"),
        "pred": write_classes(folder / "pred.tif", seed=1),
        "ref": write_classes(folder / "ref.tif", seed=2),
        "folder": folder,
    }


def _small_tmpfs(path, size):
    if os.geteuid() != 0:
        pytest.skip("full-disk tests mount a small tmpfs, which needs root")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte: every write fails with ENOSPC."""
    mnt = tmp_path / "full"
    _small_tmpfs(mnt, "64k")
    try:
        with open(mnt / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)

            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# --- bug 2: an output naming an input --------------------------------------------------------------


def test_regression_output_resolving_to_an_input_is_refused(capsys, scene, copy_checkpoint, tiny_backbone, tmp_path):
    ckpt = copy_checkpoint()
    backbone_beside = os.path.join(os.path.dirname(ckpt), os.path.basename(tiny_backbone))
    raster, pred, ref = scene["raster"], scene["pred"], scene["ref"]
    hard = str(scene["folder"] / "hardlink.tif")
    os.link(raster, hard)
    sym = str(scene["folder"] / "symlink.tif")
    os.symlink(pred, sym)
    labels = write_classes(scene["folder"] / "labels.tif", seed=3)
    inputs = [raster, pred, ref, ckpt, backbone_beside, labels]
    before, files = digest(*inputs), listing(scene["folder"], os.path.dirname(ckpt))
    cases = [
        ("bands", raster, "-c", ckpt, "-o", raster, "--overwrite"),
        ("bands", raster, "-c", ckpt, "-o", hard, "--overwrite"),  # a hard link to the raster
        ("evaluate", pred, "--reference", ref, "-o", ref, "--overwrite"),
        ("evaluate", pred, "--reference", ref, "-o", sym, "--overwrite"),  # a symlink to the prediction
        ("quicklook", pred, "-o", pred, "--overwrite"),
        ("quicklook", pred, "--image", raster, "-o", raster, "--overwrite"),
        (
            "finetune",
            "--image",
            raster,
            "--labels",
            labels,
            "--backbone",
            tiny_backbone,
            "--tile-size",
            64,
            "-o",
            labels,
            "--overwrite",
        ),
        ("finetune", "--image", raster, "--labels", labels, "-c", ckpt, "-o", raster, "--overwrite"),
        ("pretrain", raster, "--backbone", tiny_backbone, "-o", raster, "--overwrite"),
        ("segment", raster, "-c", ckpt, "-o", ckpt, "--overwrite"),
        ("segment", raster, "-c", ckpt, "-o", backbone_beside, "--overwrite"),  # the backbone it finds
        ("segment", raster, "-c", ckpt, "-o", tmp_path / "fine.tif", "--confidence", raster, "--overwrite"),
    ]
    for args in cases:
        rc, out, err = cli(capsys, *args)
        assert_one_line_error(rc, err, "is one of the inputs")
    assert digest(*inputs) == before
    assert listing(scene["folder"], os.path.dirname(ckpt)) == files
    assert not os.path.exists(tmp_path / "fine.tif")


def test_regression_many_scenes_never_overwrite_another_scene(capsys, scene, copy_checkpoint, tmp_path):
    """`segment A B --output-dir D --overwrite` where B is A's output name: B is an input, refused up front
    (each scene's own check saw only its own raster)."""
    import shutil

    ckpt = copy_checkpoint()
    a = scene["raster"]
    b = str(scene["folder"] / "scene_classes.tif")  # what scene.tif's class raster would be called
    shutil.copy(a, b)
    before, files = digest(a, b, ckpt), listing(scene["folder"])
    rc, out, err = cli(
        capsys, "segment", a, b, "-c", ckpt, "--output-dir", scene["folder"], "--overwrite", "--device", "cpu"
    )
    assert_one_line_error(rc, err, "is one of the inputs", "scene_classes.tif", "another --output-dir")
    assert digest(a, b, ckpt) == before and listing(scene["folder"]) == files


def test_regression_every_raster_reader_says_what_is_wrong(capsys, scene, tiny_backbone, tmp_path):
    """evaluate, quicklook and the label/image readers open rasters through raster_io.open_raster: a
    damaged file or a folder is named with what it was meant to be, in one line (not GDAL's text)."""
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a GeoTIFF " * 64)
    folder = tmp_path / "folder.tif"
    folder.mkdir()
    labels = write_classes(tmp_path / "labels.tif", seed=3)
    cases = [
        (("evaluate", junk, "--reference", scene["ref"]), f"prediction {junk}", "not a raster GDAL can read"),
        (("evaluate", folder, "--reference", scene["ref"]), f"prediction {folder}", "is a folder"),
        (("quicklook", junk, "-o", tmp_path / "q.png"), f"class raster {junk}", "not a raster GDAL can read"),
        (
            (
                "finetune",
                "--image",
                junk,
                "--labels",
                labels,
                "--backbone",
                tiny_backbone,
                "-o",
                tmp_path / "m.safetensors",
            ),
            f"image {junk}",
            "not a raster GDAL can read",
        ),
    ]
    for args, what, why in cases:
        rc, out, err = cli(capsys, *args)
        assert_one_line_error(rc, err, what, why)
    # the library functions (Python API, the plugin) say the same, without the command line's checks
    from spectralx.errors import SpectralXError
    from spectralx.evaluate import evaluate
    from spectralx.training.labels import open_grid

    for call, what in (
        (lambda: evaluate(str(junk), scene["ref"]), f"prediction raster {junk}"),
        (lambda: open_grid(str(junk)), f"image {junk}"),
    ):
        with pytest.raises(SpectralXError, match="not a raster GDAL can read") as exc:
            call()
        assert what in str(exc.value) and "\n" not in str(exc.value)
    assert sorted(os.listdir(tmp_path)) == sorted(["junk.tif", "folder.tif", "labels.tif", "in"])


def test_regression_same_file_sees_links_and_case(tmp_path):
    from spectralx.fileio import same_file

    a = tmp_path / "A.tif"
    a.write_bytes(b"x")
    os.link(a, tmp_path / "b.tif")
    os.symlink(a, tmp_path / "c.tif")
    assert same_file(str(a), str(tmp_path / "b.tif")) and same_file(str(a), str(tmp_path / "c.tif"))
    assert same_file(str(a), str(tmp_path / "sub" / ".." / "A.tif"))
    (tmp_path / "d.tif").write_bytes(b"x")
    assert not same_file(str(a), str(tmp_path / "d.tif"))
    # on a case-insensitive file system 'a.tif' opens A.tif: stat sees the same inode; here it is
    # another (missing) file, which is not an input
    assert not same_file(str(a), str(tmp_path / "a.tif"))


# --- bug 3: a full disk ----------------------------------------------------------------------------


def test_regression_full_disk_leaves_nothing(capsys, scene, copy_checkpoint, full_disk):
    ckpt = copy_checkpoint()
    raster, pred, ref = scene["raster"], scene["pred"], scene["ref"]
    before = digest(raster, pred, ref, ckpt)
    files = listing(full_disk)
    cases = [
        ("bands", raster, "-c", ckpt, "-o", full_disk / "map.json"),
        ("evaluate", pred, "--reference", ref, "-o", full_disk / "scores.json"),
        ("quicklook", pred, "-o", full_disk / "look.png"),
        ("segment", raster, "-c", ckpt, "-o", full_disk / "classes.tif", "--device", "cpu", "--quiet"),
    ]
    for args in cases:
        rc, out, err = cli(capsys, *args)
        assert rc != 0, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "no space left on" in err and "nothing was written" in err, err
        assert str(full_disk) in err
    assert listing(full_disk) == files  # no 0-byte, partial or hidden temporary file
    assert digest(raster, pred, ref, ckpt) == before


@pytest.mark.slow
def test_regression_full_disk_finetune(capsys, tiny_backbone, tmp_path, monkeypatch):
    """Full disk: one line, nothing written. Nearly full (room for the checkpoint, not the backbone
    copy): success, no truncated backbone, and the checkpoint still finds its backbone by path."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    labels = write_sparse_labels(tmp_path / "labels.tif")
    nearly = tmp_path / "nearly"
    _small_tmpfs(nearly, "12m")  # a 9 MB checkpoint fits, a 22 MB backbone does not
    try:
        args = [
            "finetune",
            "--image",
            IMAGE,
            "--labels",
            labels,
            "--backbone",
            tiny_backbone,
            "--tile-size",
            64,
            "--steps",
            1,
            "--batch-size",
            2,
            "--device",
            "cpu",
            "--no-baseline",
            "--classes",
        ]
        table = tmp_path / "classes.json"
        table.write_text(
            json.dumps([{"value": 1, "name": "a", "color": "#112233"}, {"value": 2, "name": "b", "color": "#445566"}])
        )
        before = digest(IMAGE, labels, tiny_backbone)
        rc, out, err = cli(capsys, *args, table, "-o", nearly / "model.safetensors")
        assert rc == 0, err
        assert sorted(os.listdir(nearly)) == ["model.safetensors"], os.listdir(nearly)
        assert "no space left on" in out + err and "referenced by path" in out + err
        rc, out, err = cli(capsys, "info", nearly / "model.safetensors", "--check")
        assert rc == 0, err
        # now the disk is full: the next checkpoint cannot be written at all
        with open(nearly / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)

            except OSError:
                pass
        files = listing(nearly)
        rc, out, err = cli(capsys, *args, table, "-o", nearly / "second.safetensors", "--quiet")
        assert_one_line_error(rc, err, "no space left on", "while writing", "nothing was written")
        assert listing(nearly) == files
        assert digest(IMAGE, labels, tiny_backbone) == before
    finally:
        subprocess.run(["umount", "-l", str(nearly)], check=False)


# --- bug 4: the user's backbone is never hard-linked --------------------------------------------


@pytest.mark.slow
def test_regression_backbone_never_hard_linked(capsys, tiny_backbone, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    user = tmp_path / "user"
    user.mkdir()
    backbone = user / "bb.safetensors"
    shutil.copy(tiny_backbone, backbone)
    original = digest(backbone)
    labels = write_sparse_labels(tmp_path / "labels.tif")
    out = tmp_path / "out"
    out.mkdir()
    rc, out_text, err = cli(
        capsys,
        "finetune",
        "--image",
        IMAGE,
        "--labels",
        labels,
        "--backbone",
        backbone,
        "--tile-size",
        64,
        "--steps",
        1,
        "--batch-size",
        2,
        "--device",
        "cpu",
        "--no-baseline",
        "-o",
        out / "m.safetensors",
    )
    assert rc == 0, err
    beside = out / "bb.safetensors"
    assert os.stat(beside).st_ino != os.stat(backbone).st_ino and os.stat(backbone).st_nlink == 1
    assert "backbone: copied beside" in out_text + err or "backbone: reflinked" in out_text + err
    with open(beside, "r+b") as f:  # a later write to the name beside the checkpoint …
        f.write(b"\xff" * 64)
    assert digest(backbone) == original  # … never reaches the user's file
    # the card references the backbone by path and sha256: found there when the copy is unusable
    from spectralx.checkpoint import load_checkpoint, read_card

    card = read_card(str(out / "m.safetensors"))
    assert card.backbone.path == str(backbone)
    os.remove(beside)
    load_checkpoint(str(out / "m.safetensors"))


# --- bug 5: overwriting needs --overwrite, everywhere ------------------------------------------------


def test_regression_existing_outputs_need_overwrite(capsys, scene, copy_checkpoint, tiny_backbone, tmp_path):
    ckpt = copy_checkpoint()
    raster, pred, ref = scene["raster"], scene["pred"], scene["ref"]
    out = tmp_path / "out"
    out.mkdir()
    existing = {name: out / name for name in ("m.safetensors", "map.json", "look.png", "scores.json", "classes.qml")}
    for p in existing.values():
        p.write_bytes(b"user's own file")
    before = digest(*existing.values(), raster, pred, ref)
    labels = scene["ref"]
    cases = [
        (
            "finetune",
            "--image",
            raster,
            "--labels",
            labels,
            "--backbone",
            tiny_backbone,
            "--tile-size",
            64,
            "-o",
            existing["m.safetensors"],
        ),
        ("pretrain", raster, "--backbone", tiny_backbone, "-o", existing["m.safetensors"]),
        ("bands", raster, "-c", ckpt, "-o", existing["map.json"]),
        ("quicklook", pred, "-o", existing["look.png"]),
        ("evaluate", pred, "--reference", ref, "-o", existing["scores.json"]),
        # only the style beside the class raster exists: it is the user's, not replaced silently
        ("segment", raster, "-c", ckpt, "-o", out / "classes.tif", "--device", "cpu"),
    ]
    for args in cases:
        rc, _, err = cli(capsys, *args)
        assert_one_line_error(rc, err, "already exists", "--overwrite")
    assert digest(*existing.values(), raster, pred, ref) == before
    assert not (out / "classes.tif").exists()
    # with --overwrite the same commands replace them
    for args in (cases[2], cases[3], cases[4]):
        rc, _, err = cli(capsys, *args, "--overwrite")
        assert rc == 0, err
    assert json.loads(existing["scores.json"].read_text())["prediction"] == pred
    assert existing["look.png"].read_bytes()[:4] == b"\x89PNG"
    assert sorted(os.listdir(out)) == sorted(existing)  # no temporary file left beside them


# --- bug 6: SIGTERM / SIGHUP / Ctrl-C ---------------------------------------------------------------


def _spectralx(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "spectralx.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_regression_signals_during_segment_leave_nothing(sig, copy_checkpoint, tmp_path):
    ckpt = copy_checkpoint()
    raster = write_raster(tmp_path / "big.tif", h=640, w=640)
    before = digest(raster, ckpt)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = _spectralx(
        "segment",
        raster,
        "-c",
        ckpt,
        "-o",
        out / "classes.tif",
        "--confidence",
        out / "conf.tif",
        "--device",
        "cpu",
        "--batch-size",
        1,
        "--quiet",
        env=env,
    )
    # the temporary outputs exist once the weights are loaded and tiles are running
    started = _wait_for(lambda: any(n.startswith(".sx-") for n in os.listdir(out)) or proc.poll() is not None)
    assert started and proc.poll() is None, "segment finished before it could be interrupted"
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("spectralx: stopped by SIG")
    assert os.listdir(out) == []  # no .part / temporary file, no partial raster
    assert digest(raster, ckpt) == before


def _loading_torch(pid):
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "torch" in f.read()
    except OSError:
        return False


def test_regression_ctrl_c_in_the_first_second(scene):
    proc = _spectralx("bands", scene["raster"])
    # interrupt while the command line is still importing torch and the commands (the first second)
    assert _wait_for(lambda: _loading_torch(proc.pid) or proc.poll() is not None, timeout=30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == 130, err
    assert err.strip() == "spectralx: interrupted; unfinished outputs were removed"


@pytest.mark.slow
def test_regression_broken_pipe_is_quiet():
    enmap = os.path.join(FIXTURES, "enmap_potsdam_tile_128_0.tif")
    cmd = f"{sys.executable} -m spectralx.cli bands {enmap} | head -n 2"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert len(proc.stdout.splitlines()) == 2
    assert proc.stderr.strip() == "", proc.stderr
    assert proc.returncode in (0, 141)


# --- bug 7: silently wrong results -----------------------------------------------------------------


def _nan_checkpoint(path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    name = sorted(k for k in tensors if k.startswith("head") and tensors[k].is_floating_point())[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, path, metadata=meta)
    return name


def test_regression_silently_wrong_results_are_refused(capsys, scene, copy_checkpoint, tmp_path):
    ckpt = copy_checkpoint()
    raster, ref = scene["raster"], scene["ref"]
    bad = _nan_checkpoint(ckpt)
    rc, _, err = cli(capsys, "info", ckpt, "--check")
    assert_one_line_error(rc, err, "NaN", bad)
    rc, _, err = cli(capsys, "segment", raster, "-c", ckpt, "-o", tmp_path / "c.tif", "--device", "cpu")
    assert_one_line_error(rc, err, "NaN")
    assert not (tmp_path / "c.tif").exists() and not (tmp_path / "c.qml").exists()
    # evaluate: a multi-band image as the prediction, a 2-band prediction, complex pixels
    rc, _, err = cli(capsys, "evaluate", raster, "--reference", ref)
    assert_one_line_error(rc, err, "3 bands", "one band")
    two = write_classes(tmp_path / "two.tif", count=2)
    rc, _, err = cli(capsys, "evaluate", two, "--reference", ref)
    assert_one_line_error(rc, err, "2 bands")
    cplx = write_classes(tmp_path / "complex.tif", dtype="complex64")
    for args in (
        ("evaluate", cplx, "--reference", ref),
        ("evaluate", scene["pred"], "--reference", cplx),
        ("bands", cplx),
    ):
        rc, _, err = cli(capsys, *args)
        assert_one_line_error(rc, err, "complex")
    # wavelength metadata that is not a number: named, not ignored in favour of a guessed sensor
    good = copy_checkpoint("good")
    for text in ("abc", "nan"):
        odd = write_raster(tmp_path / f"odd_{text}.tif", tags={2: text})
        rc, _, err = cli(capsys, "segment", odd, "-c", good, "-o", tmp_path / "x.tif", "--device", "cpu")
        assert_one_line_error(rc, err, "not a number", f"band 2 '{text}'", "--sensor")
        rc, _, err = cli(capsys, "bands", odd, "-c", good)
        assert_one_line_error(rc, err, "not a number")
    assert not (tmp_path / "x.tif").exists()


def test_regression_training_divergence_writes_nothing(tiny_backbone, tmp_path):
    from spectralx.checkpoint import Band, ClassInfo, new_model, save_checkpoint
    from spectralx.errors import CheckpointError

    model, card = new_model(
        tiny_backbone,
        [Band(f"B{i}", w, 20.0) for i, w in enumerate(WAVELENGTHS)],
        [ClassInfo(1, "a", "#112233"), ClassInfo(2, "b", "#445566")],
        img_size=64,
    )
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("head")).fill_(float("inf"))
    with pytest.raises(CheckpointError, match="diverged"):
        save_checkpoint(model, card, str(tmp_path / "diverged.safetensors"))
    assert os.listdir(tmp_path) == []


# --- bug 8: every bad argument is one line ---------------------------------------------------------


def test_regression_bad_arguments_are_one_line(capsys, scene, copy_checkpoint, tiny_backbone, tmp_path):
    raster, pred = scene["raster"], scene["pred"]
    labels = scene["ref"]
    ft = ("finetune", "--image", raster, "--labels", labels, "--backbone", tiny_backbone, "-o", tmp_path / "m.st")
    cases = [
        (ft + ("--tile-size", 4096), "--tile-size"),
        (ft + ("--tile-size", 100), "multiple of 32"),
        (ft + ("--lr", "nan"), "--lr"),
        (ft + ("--lr", "-1"), "--lr"),
        (ft + ("--steps", 0), "--steps"),
        (ft + ("--val-fraction", 1.5), "--val-fraction"),
        (("pretrain", raster, "--backbone", tiny_backbone, "-o", tmp_path / "p.st", "--mask-ratio", 1), "--mask-ratio"),
        (("summary", "--backbone-preset", "vit_tiny_patch16", "--bands", 0, "--classes", 3), "--bands"),
        (("summary", "--backbone-preset", "vit_tiny_patch16", "--bands", 3, "--classes", -2), "--classes"),
        (
            ("summary", "--backbone-preset", "vit_tiny_patch16", "--bands", 3, "--classes", 3, "--tile-size", 0),
            "--tile-size",
        ),
        (("quicklook", pred, "-o", tmp_path / "q.png", "--max-side", 0), "--max-side"),
        (("quicklook", pred, "-o", tmp_path / "q.png", "--image", raster, "--rgb-bands", 300, 2, 1), "band 300"),
        (("quicklook", pred, "-o", tmp_path / "q.png", "--image", raster, "--rgb-bands", 0, 2, 1), "--rgb-bands"),
        (("segment", raster, "-c", "x", "-o", tmp_path / "s.tif", "--overlap", 1.0), "--overlap"),
        (("segment", raster, "-c", "x", "-o", tmp_path / "s.tif", "--batch-size", 0), "--batch-size"),
        (("bands", raster, "--tolerance", "inf"), "--tolerance"),
        (("finetune", "--image", raster), "required"),
    ]
    for args, needle in cases:
        rc, out, err = cli(capsys, *args)
        assert_one_line_error(rc, err, needle)
    assert os.listdir(tmp_path) == ["in"]


def test_regression_long_output_names(capsys, scene, copy_checkpoint, tmp_path):
    """A 240- or 250-character name is valid (the temporary name stays short); a name the file system
    cannot hold is one line before any work."""
    ckpt = copy_checkpoint()
    out = tmp_path / "out"
    out.mkdir()
    name240 = "c" * 236 + ".tif"
    rc, _, err = cli(
        capsys,
        "segment",
        scene["raster"],
        "-c",
        ckpt,
        "-o",
        out / name240,
        "--device",
        "cpu",
        "--quiet",
        "--confidence",
        out / ("f" * 246 + ".tif"),
    )
    assert rc == 0, err
    name250 = "m" * 245 + ".json"
    rc, _, err = cli(capsys, "bands", scene["raster"], "-c", ckpt, "-o", out / name250)
    assert rc == 0, err
    assert sorted(os.listdir(out)) == sorted([name240, "c" * 236 + ".qml", "f" * 246 + ".tif", name250])
    rc, _, err = cli(capsys, "bands", scene["raster"], "-c", ckpt, "-o", out / ("n" * 300 + ".json"))
    assert_one_line_error(rc, err, "file name is 305 bytes", "allows 255")


def test_regression_card_values_are_checked(capsys, copy_checkpoint, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    ckpt = copy_checkpoint()
    with safe_open(ckpt, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}

    def variant(name, edit):
        card = json.loads(meta["spectralx_model_card"])
        edit(card)
        path = str(tmp_path / f"{name}.safetensors")
        save_file(tensors, path, metadata={"spectralx_model_card": json.dumps(card)})
        return path

    def string_wavelength(c):
        c["bands"][1]["wavelength_nm"] = "560"

    def zero_std(c):
        c["normalization"] = {"method": "zscore", "mean": [0.1, 0.1, 0.1], "std": [0.2, 0.0, 0.2], "clip": 6.0}

    def bad_class(c):
        c["classes"][0]["value"] = 300

    for name, edit, needle in (
        ("wl", string_wavelength, "wavelength '560'"),
        ("std", zero_std, "std of band 2 is 0"),
        ("cls", bad_class, "value 300"),
    ):
        path = variant(name, edit)
        for args in (
            ("info", path),
            ("segment", write_raster(tmp_path / "r.tif"), "-c", path, "-o", tmp_path / f"{name}.tif", "--overwrite"),
        ):
            rc, _, err = cli(capsys, *args)
            assert_one_line_error(rc, err, needle)
        assert not (tmp_path / f"{name}.tif").exists()


# --- bug 9: unclear messages -----------------------------------------------------------------------


def test_regression_unclear_messages_are_named(capsys, scene, copy_checkpoint, tmp_path):
    ckpt = copy_checkpoint()
    folder = tmp_path / "a_folder"
    folder.mkdir()
    for args in (
        ("info", folder),
        ("segment", scene["raster"], "-c", folder, "-o", tmp_path / "x.tif"),
        ("segment", folder, "-c", ckpt, "-o", tmp_path / "x.tif"),
        ("info", ckpt, "--check", "--backbone", folder),
        ("bands", folder),
    ):
        rc, _, err = cli(capsys, *args)
        assert_one_line_error(rc, err, "is a folder")
    # a truncated GeoTIFF: one line naming the file, not GDAL's text
    whole = write_raster(tmp_path / "whole.tif", h=300, w=300)
    cut = tmp_path / "cut.tif"
    data = open(whole, "rb").read()
    cut.write_bytes(data[: len(data) * 2 // 3])
    for args in (("bands", cut), ("segment", cut, "-c", ckpt, "-o", tmp_path / "y.tif")):
        rc, _, err = cli(capsys, *args)
        assert_one_line_error(rc, err, "truncated", str(cut))
    assert not (tmp_path / "y.tif").exists()


def test_regression_band_coverage_error_is_summarized(capsys, make_checkpoint, tmp_path):
    wl = list(np.linspace(418.0, 2446.0, 218))
    ckpt = make_checkpoint(wavelengths=wl, name="hyper")
    raster = write_raster(tmp_path / "vnir.tif", bands=4, wavelengths=(450.0, 600.0, 750.0, 900.0))
    rc, _, err = cli(capsys, "bands", raster, "-c", ckpt)
    assert_one_line_error(rc, err, "218", "418", "2446", "450", "900")
    assert len(err) < 400, len(err)  # not 218 band names


def test_regression_gdal_failure_names_the_right_file():
    """GDAL says "Read or write failed" for both: the file and the block call it names decide."""
    from rasterio.errors import RasterioIOError

    from spectralx.errors import OutputError, RasterError
    from spectralx.fileio import explain_failure

    read = RasterioIOError(
        "Read or write failed. /data/in.tif, band 1: IReadBlock failed at X offset 0, "
        "Y offset 3: TIFFReadEncodedTile() failed.\nmore GDAL text"
    )
    got = explain_failure(read, reading="/data/in.tif", writing="/tmp/out.tif")
    assert isinstance(got, RasterError) and str(got).startswith("cannot read /data/in.tif")
    assert "\n" not in str(got)
    write = RasterioIOError("Read or write failed. /tmp/.sx-1234abcd.tmp.tif, band 1: IWriteBlock failed")
    got = explain_failure(write, reading="/data/in.tif", writing="/tmp/out.tif")
    assert isinstance(got, OutputError) and "cannot write /tmp/out.tif" in str(got)
    assert "nothing was written" in str(got)
    bug = ValueError("a bug, not a file problem")
    assert explain_failure(bug, reading="/data/in.tif", writing="/tmp/out.tif") is bug
