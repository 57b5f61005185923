"""Dask distributed (issue 10 §2): a LocalCluster of 2 worker processes on 127.0.0.1 gives the class
raster of an in-process run; many scenes with one bad; cancel leaves nothing; the engine runs and
explains itself without Dask."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from conftest import run_cli
from test_inference import random_raster, write_raster

from spectralx.errors import Cancelled, SpectralXError
from spectralx.inference import segment
from spectralx.progress import Progress

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """`--dask local:2`'s own cluster (2 worker processes, 1 thread each, 127.0.0.1 only, no dashboard),
    started once for this module; the tests reach it by its tcp:// address, as a remote one."""
    from spectralx.inference.distributed import connect

    client, lc = connect("local:2")
    assert lc.scheduler_address.startswith("tcp://127.0.0.1:") and len(client.nthreads()) == 2
    assert set(client.nthreads().values()) == {1}
    client.close()
    yield lc.scheduler_address
    lc.close()


@pytest.fixture
def scene(tmp_path, make_checkpoint):
    ckpt = make_checkpoint(seed=3)
    data = random_raster(280, 300, seed=9)
    data[:, 20:60, 30:280] = -9999
    return write_raster(tmp_path / "scene.tif", data, nodata=-9999), ckpt


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs


@pytest.mark.slow
def test_cluster_gives_the_in_process_class_raster(tmp_path, scene, cluster):
    raster, ckpt = scene
    local = segment(
        raster,
        ckpt,
        str(tmp_path / "local.tif"),
        device="cpu",
        batch_size=4,
        confidence=str(tmp_path / "local_conf.tif"),
    )
    assert local.blocks == 1
    remote = segment(
        raster,
        ckpt,
        str(tmp_path / "dask.tif"),
        device="cpu",
        batch_size=4,
        dask=cluster,
        block_size=256,
        confidence=str(tmp_path / "dask_conf.tif"),
    )
    assert remote.blocks == 4 and remote.workers == 2
    a, b = read(local.output), read(remote.output)
    np.testing.assert_array_equal(b[0], a[0])  # identical class raster
    assert b[1:] == a[1:]  # same grid
    np.testing.assert_allclose(read(remote.confidence)[0], read(local.confidence)[0], atol=1e-5)
    assert (a[0][20:60, 30:280] == 0).all() and (a[0] > 0).mean() > 0.8
    assert os.path.exists(tmp_path / "dask.qml")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporaries left


@pytest.mark.slow
def test_many_scenes_with_one_bad_one_over_the_cluster(tmp_path, scene, cluster):
    raster, ckpt = scene
    other = write_raster(tmp_path / "other.tif", random_raster(100, 130, seed=2))
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a raster at all")
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli(
        "segment",
        raster,
        str(bad),
        other,
        "-c",
        ckpt,
        "--output-dir",
        out,
        "--dask",
        cluster,
        "--device",
        "cpu",
        "--quiet",
    )
    assert proc.returncode == 1, proc.stderr
    assert "broken.tif" in proc.stdout and "failed" in proc.stdout and "2 of 3 scenes" in proc.stdout
    assert sorted(os.listdir(out)) == [
        "other_classes.qml",
        "other_classes.tif",
        "other_confidence.tif",
        "scene_classes.qml",
        "scene_classes.tif",
        "scene_confidence.tif",
    ]
    single = segment(other, ckpt, str(tmp_path / "single.tif"), device="cpu")
    np.testing.assert_array_equal(read(out / "other_classes.tif")[0], read(single.output)[0])


def test_many_scenes_in_process(tmp_path, make_checkpoint):
    from spectralx.inference.scenes import segment_scenes

    ckpt = make_checkpoint()
    raster = write_raster(tmp_path / "a.tif", random_raster(60, 80, seed=4))
    other = write_raster(tmp_path / "b.tif", random_raster(90, 70, seed=5))
    out = tmp_path / "out"
    out.mkdir()
    outcomes = segment_scenes([raster, str(tmp_path / "missing.tif"), other], ckpt, str(out), device="cpu")
    assert [o.error is None for o in outcomes] == [True, False, True]
    assert "does not exist" in str(outcomes[1].error)
    with rasterio.open(out / "b_classes.tif") as ds:
        assert (ds.width, ds.height) == (70, 90)
    with pytest.raises(SpectralXError, match="same name"):
        segment_scenes([raster, raster], ckpt, str(out), device="cpu")


@pytest.mark.slow
def test_cancel_on_the_cluster_leaves_nothing(tmp_path, scene, cluster):
    raster, ckpt = scene
    out = tmp_path / "out"
    out.mkdir()
    updates = []
    progress = Progress(on_update=lambda d, t, m: updates.append(d), is_cancelled=lambda: len(updates) >= 1)
    with pytest.raises(Cancelled):
        segment(
            raster,
            ckpt,
            str(out / "c.tif"),
            device="cpu",
            dask=cluster,
            block_size=256,
            confidence=str(out / "conf.tif"),
            progress=progress,
        )
    assert os.listdir(out) == []


def test_local_workers_share_the_cores():
    from spectralx.inference.distributed import local_threads

    cores = os.cpu_count() or 1
    assert local_threads("local:2", 2) == max(1, cores // 2)
    assert local_threads("local", 1) == cores
    assert local_threads("tcp://127.0.0.1:8786", 2) == 0  # a remote cluster's workers keep their own


def test_local_cluster_keeps_malloc_adaptive_and_this_process_environment():
    """Issue 22: Dask's nanny gives workers MALLOC_TRIM_THRESHOLD_=65536, which made a block 1.44x
    slower than in-process (every large NumPy temporary mapped afresh); ours are started without it.
    The nanny also writes OMP_NUM_THREADS=1 & co. into the starting process's environment (QGIS's):
    connect() puts it back as it was."""
    from spectralx.inference.distributed import connect

    before = dict(os.environ)
    client, lc = connect("local:1")
    try:
        assert dict(os.environ) == before
        seen = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
        assert list(seen.values()) == [(before.get("MALLOC_TRIM_THRESHOLD_"), "1")]
    finally:
        client.close()
        lc.close()


def test_dask_addresses_are_checked():
    from spectralx.inference.distributed import connect

    for bad in ("local:x", "local:0", "somewhere"):
        with pytest.raises(SpectralXError, match="--dask"):
            connect(bad)


@pytest.fixture(scope="module")
def thread_cluster():
    """Workers as threads of this process, so that a test can make a block's task fail."""
    lc = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    yield lc.scheduler_address
    lc.close()


@pytest.mark.slow
def test_a_failed_block_is_retried_once_then_named(tmp_path, scene, thread_cluster, monkeypatch):
    import spectralx.inference.distributed as dist

    raster, ckpt = scene
    real = dist.compute_block
    tally = tmp_path / "failures.txt"  # a file: the task function reaches the worker pickled

    def flaky(task, fail_times, tally=str(tally)):
        seen = open(tally).read().count("x") if os.path.exists(tally) else 0
        if task.block.index == 1 and seen < fail_times:
            with open(tally, "a") as f:
                f.write("x")
            raise ConnectionResetError("worker lost")
        return real(task)

    logs = []
    monkeypatch.setattr(dist, "compute_block", lambda task: flaky(task, 1))
    res = segment(
        raster,
        ckpt,
        str(tmp_path / "retried.tif"),
        device="cpu",
        dask=thread_cluster,
        block_size=256,
        progress=Progress(on_log=logs.append),
    )
    assert tally.read_text() == "x" and any("retrying it once" in m for m in logs)
    # the closing breakdown: where the cluster run's time went (docs/dev/cpu-speed.md, the Dask row)
    assert any(
        m.startswith("Dask: 4 blocks in") and "workers ran blocks" in m and "the client waited" in m for m in logs
    )
    assert dist.LAST_STATS.blocks == 4 and dist.LAST_STATS.run_s > 0
    local = segment(raster, ckpt, str(tmp_path / "local.tif"), device="cpu")
    np.testing.assert_array_equal(read(res.output)[0], read(local.output)[0])

    tally.unlink()
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(dist, "compute_block", lambda task: flaky(task, 2))
    with pytest.raises(SpectralXError, match=r"block 1 \(rows 0-255, columns 256-299\).*failed twice.*worker lost"):
        segment(raster, ckpt, str(out / "x.tif"), device="cpu", dask=thread_cluster, block_size=256)
    assert tally.read_text() == "xx" and os.listdir(out) == []
