"""Model downloads (spectralx_qgis.download) against a real HTTP server on 127.0.0.1: resume after an
interrupted transfer, a hash mismatch refused and its part deleted, a server that ignores Range,
cancel and resume, and one-line errors."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from model_server import ModelServer

from spectralx_qgis.models.download import DownloadCancelled, DownloadError, download, part_path

SIZE = 1_000_003  # not a multiple of the chunk size


@pytest.fixture(scope="module")
def payload():
    return np.random.default_rng(12).integers(0, 256, SIZE, dtype=np.uint8).tobytes()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_plain_download_reports_progress_and_digests(payload, tmp_path):
    dest = str(tmp_path / "release.pth")
    seen = []
    with ModelServer(payload) as srv:
        res = download(
            srv.url,
            dest,
            expected_sha256=sha(payload),
            progress=lambda d, t: seen.append((d, t)),
            proxy="",
            chunk_size=1 << 16,
        )
    assert open(dest, "rb").read() == payload
    assert res.sha256 == sha(payload) and res.md5 == hashlib.md5(payload).hexdigest()
    assert res.size == SIZE and res.resumed_from == 0
    assert not os.path.exists(part_path(dest))
    assert seen[0] == (0, SIZE) and seen[-1] == (SIZE, SIZE)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert srv.requests[0]["range"] is None


def test_interrupted_transfer_keeps_the_part_and_resumes_with_range(payload, tmp_path):
    dest = str(tmp_path / "release.pth")
    cut = 300_000
    with ModelServer(payload, cut_after=[cut]) as srv:
        with pytest.raises(DownloadError) as err:
            download(srv.url, dest, expected_sha256=sha(payload), proxy="", chunk_size=1 << 16)
        msg = str(err.value)
        assert "\n" not in msg and f"after {cut} of {SIZE} bytes" in msg and "resume" in msg
        assert not os.path.exists(dest)
        assert os.path.getsize(part_path(dest)) == cut  # what arrived is kept
        res = download(srv.url, dest, expected_sha256=sha(payload), proxy="", chunk_size=1 << 16)
    assert srv.requests[1]["range"] == f"bytes={cut}-"  # asked only for the rest
    assert res.resumed_from == cut and res.size == SIZE
    assert res.sha256 == sha(payload)  # hashed over the whole file
    assert open(dest, "rb").read() == payload
    assert not os.path.exists(part_path(dest))


def test_hash_mismatch_is_refused_and_the_part_removed(payload, tmp_path):
    dest = str(tmp_path / "release.pth")
    wrong = sha(b"another file")
    with ModelServer(payload) as srv:
        with pytest.raises(DownloadError) as err:
            download(srv.url, dest, expected_sha256=wrong, proxy="")
    msg = str(err.value)
    assert sha(payload) in msg and wrong in msg and "\n" not in msg
    assert not os.path.exists(dest) and not os.path.exists(part_path(dest))


def test_resume_onto_a_damaged_part_is_refused_by_the_hash(payload, tmp_path):
    """A part whose bytes differ from the server's (another file, disk damage) cannot slip through."""
    dest = str(tmp_path / "release.pth")
    with open(part_path(dest), "wb") as f:
        f.write(b"\0" * 1000)
    with ModelServer(payload) as srv:
        with pytest.raises(DownloadError, match="does not match"):
            download(srv.url, dest, expected_sha256=sha(payload), proxy="")
        assert srv.requests[0]["range"] == "bytes=1000-"
    assert not os.path.exists(dest) and not os.path.exists(part_path(dest))


def test_server_ignoring_range_restarts_from_zero(payload, tmp_path):
    dest = str(tmp_path / "release.pth")
    with open(part_path(dest), "wb") as f:
        f.write(payload[:250_000])
    with ModelServer(payload, ignore_range=True) as srv:
        res = download(srv.url, dest, expected_sha256=sha(payload), proxy="")
    assert srv.requests[0]["range"] == "bytes=250000-"  # asked, but got the whole file (200)
    assert res.resumed_from == 0 and res.size == SIZE and res.sha256 == sha(payload)
    assert open(dest, "rb").read() == payload  # not the old part + the whole file


def test_complete_part_with_416_starts_again(payload, tmp_path):
    dest = str(tmp_path / "release.pth")
    with open(part_path(dest), "wb") as f:
        f.write(payload)
    with ModelServer(payload) as srv:
        res = download(srv.url, dest, expected_sha256=sha(payload), proxy="")
    assert [r["range"] for r in srv.requests] == [f"bytes={SIZE}-", None]
    assert res.sha256 == sha(payload) and open(dest, "rb").read() == payload


def test_cancel_keeps_the_part_then_resumes(payload, tmp_path):
    dest = str(tmp_path / "release.pth")
    progressed = []
    with ModelServer(payload) as srv:
        with pytest.raises(DownloadCancelled):
            download(
                srv.url,
                dest,
                proxy="",
                chunk_size=1 << 16,
                progress=lambda d, t: progressed.append(d),
                cancelled=lambda: len(progressed) > 4,
            )
        kept = os.path.getsize(part_path(dest))
        assert kept == 4 * (1 << 16) and not os.path.exists(dest)
        res = download(srv.url, dest, expected_sha256=sha(payload), proxy="")
    assert res.resumed_from == kept and open(dest, "rb").read() == payload


def test_cancel_with_discard_removes_the_part(payload, tmp_path):
    dest = str(tmp_path / "release.pth")
    with ModelServer(payload) as srv:
        with pytest.raises(DownloadCancelled):
            download(srv.url, dest, proxy="", cancelled=lambda: True, discard_on_cancel=True)
    assert not os.path.exists(part_path(dest)) and not os.path.exists(dest)


def test_existing_destination_is_not_overwritten(payload, tmp_path):
    dest = tmp_path / "release.pth"
    dest.write_bytes(b"mine")
    with ModelServer(payload) as srv:
        with pytest.raises(DownloadError, match="already exists"):
            download(srv.url, str(dest), proxy="")
        assert srv.requests == []  # nothing fetched
        res = download(srv.url, str(dest), proxy="", overwrite=True)
    assert res.sha256 == sha(payload) and dest.read_bytes() == payload


def test_http_and_network_errors_are_one_line(payload, tmp_path):
    dest = str(tmp_path / "release.pth")
    with ModelServer(payload) as srv:
        with pytest.raises(DownloadError) as err:
            download(srv.url.replace("release.bin", "moved.bin"), dest, proxy="")
        port = srv.httpd.server_address[1]
    assert "HTTP 404" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DownloadError, match="refused the connection"):  # the server is gone now
        download(f"http://127.0.0.1:{port}/release.bin", dest, proxy="", timeout=5)
    with pytest.raises(DownloadError, match="cannot resolve"):
        download("http://no-such-host.invalid/release.bin", dest, proxy="", timeout=5)
    assert not os.path.exists(dest) and not os.path.exists(part_path(dest))


def test_proxy_is_used_when_given(payload, tmp_path):
    """A proxy URL is honoured: the request goes to the proxy (here our server, acting as one), with the
    absolute URL of the real host in its request line."""
    dest = str(tmp_path / "release.pth")
    with ModelServer(payload) as proxy_srv:
        proxy_url = proxy_srv.url.rsplit("/", 1)[0]
        with pytest.raises(DownloadError, match="HTTP 404"):
            download("http://models.invalid/release.bin", dest, proxy=proxy_url, timeout=5)
    assert proxy_srv.requests[0]["path"] == "http://models.invalid/release.bin"
