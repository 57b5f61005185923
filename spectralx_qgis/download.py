"""Resumable HTTP(S) download of a model release with its sha256 checked, standard library only.

Release files are 1-4 GB, so an interrupted transfer is resumed, not restarted: bytes go to
`<dest>.part`, and a later call asks the server for the rest (`Range: bytes=N-`). A server that
ignores Range answers 200 with the whole file; the part is then started again from zero. The
sha256 is computed over the whole file (the kept part is hashed first on a resume), and a file
that does not match the expected digest is deleted, never renamed into place. No Qt here: the
model manager runs this in a QgsTask, with QGIS's proxy passed in (proxy.qgis_proxy_url()).
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

CHUNK = 1 << 20
USER_AGENT = "SpectralX-QGIS model manager"


class DownloadError(Exception):
    """A download failed; the message is one line saying what and what to do."""


class DownloadCancelled(DownloadError):
    """Cancelled by the user; the part file is kept for a resume unless asked to discard it."""


@dataclass
class DownloadResult:
    path: str
    size: int
    sha256: str
    md5: str
    resumed_from: int          # bytes that were already on disk (0: a fresh download)


def part_path(dest: str) -> str:
    return dest + ".part"


def _opener(proxy: Optional[str]) -> urllib.request.OpenerDirector:
    """proxy: a URL (QGIS's proxy), "" for a direct connection, None for the environment's."""
    if proxy is None:
        return urllib.request.build_opener()
    handler = urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {})
    return urllib.request.build_opener(handler)


def _reason(exc: BaseException, url: str) -> str:
    host = urlsplit(url).hostname or url
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (404, 410):
            return f"there is no file at {url} (HTTP {exc.code}): it may have moved; see the release's source page"
        if exc.code in (401, 403):
            return (f"access denied (HTTP {exc.code}): this release may need a login or an accepted licence "
                    "on its source page")
        return f"the server answered HTTP {exc.code} {exc.reason}; try again later"
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, socket.gaierror):
        return f"cannot resolve {host} (offline, or a proxy is needed: QGIS ▸ Options ▸ Network)"
    if isinstance(inner, (socket.timeout, TimeoutError)):
        return f"no answer from {host} in time; try again later"
    if isinstance(inner, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(inner, OSError) and inner.strerror:
        return f"{inner.strerror} ({host})"
    return f"{type(inner).__name__}: {inner}" if str(inner) else type(inner).__name__


def _content_range_start(value: Optional[str]) -> Optional[int]:
    m = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else None


def _total_from_content_range(value: Optional[str]) -> Optional[int]:
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def download(url: str, dest: str, expected_sha256: Optional[str] = None,
             progress: Optional[Callable[[int, Optional[int]], None]] = None,
             cancelled: Optional[Callable[[], bool]] = None, proxy: Optional[str] = None,
             timeout: float = 30.0, overwrite: bool = False, discard_on_cancel: bool = False,
             chunk_size: int = CHUNK) -> DownloadResult:
    """Download `url` to `dest` (resuming `dest.part` if there is one) and return its digests.

    progress(done, total) is called per chunk (total None when the server does not say);
    cancelled() is polled per chunk. Raises DownloadCancelled or DownloadError (one line)."""
    if os.path.exists(dest) and not overwrite:
        raise DownloadError(f"{dest} already exists; remove it or choose another name")
    folder = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
    part = part_path(dest)
    expected = expected_sha256.lower() if expected_sha256 else None
    opener = _opener(proxy)
    name = os.path.basename(dest)
    offset = os.path.getsize(part) if os.path.isfile(part) else 0

    def fetch(start: int):
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if start:
            req.add_header("Range", f"bytes={start}-")
        return opener.open(req, timeout=timeout)

    try:
        try:
            resp = fetch(offset)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not offset:
                raise
            # Range not satisfiable: the part is complete (or longer than the file): start again
            exc.close()
            os.remove(part)
            offset = 0
            resp = fetch(0)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"download of {name} failed: {_reason(exc, url)}") from None

    with resp:
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and status == 206 and _content_range_start(resp.headers.get("Content-Range")) == offset:
            total = _total_from_content_range(resp.headers.get("Content-Range")) or (
                offset + length if length is not None else None)
        else:
            offset = 0          # a fresh download, or the server ignored Range and sends everything
            total = length
        resumed_from = offset
        sha, md5 = hashlib.sha256(), hashlib.md5()
        if offset:
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    sha.update(chunk)
                    md5.update(chunk)
        done = offset
        try:
            with open(part, "ab" if offset else "wb") as out:
                if progress:
                    progress(done, total)
                while True:
                    if cancelled is not None and cancelled():
                        raise DownloadCancelled(f"download of {name} cancelled" + (
                            "" if discard_on_cancel else f" ({done} bytes kept: download again to resume)"))
                    try:
                        chunk = resp.read(chunk_size)
                    except http.client.IncompleteRead as exc:
                        chunk = exc.partial
                        if chunk:
                            out.write(chunk)
                            sha.update(chunk)
                            md5.update(chunk)
                            done += len(chunk)
                        raise DownloadError(_lost(name, done, total)) from None
                    except (OSError, http.client.HTTPException) as exc:
                        raise DownloadError(_lost(name, done, total, _reason(exc, url))) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
        except DownloadCancelled:
            if discard_on_cancel and os.path.exists(part):
                os.remove(part)
            raise
        except OSError as exc:   # writing: disk full, permissions
            if exc.errno == errno.ENOSPC:
                raise DownloadError(f"disk full while writing {part} ({done} bytes written"
                                    + (f" of {total}" if total else "") + "): free some space, then "
                                    "download again to resume") from None
            raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None

    if total is not None and done != total:
        raise DownloadError(_lost(name, done, total))
    digest = sha.hexdigest()
    if expected and digest != expected:
        os.remove(part)
        raise DownloadError(f"{name}: sha256 {digest} does not match the published {expected}; the "
                            "download was deleted (damaged in transfer or a different file): try again")
    if os.path.exists(dest) and not overwrite:
        raise DownloadError(f"{dest} appeared while downloading; the download is kept as {part}")
    os.replace(part, dest)
    return DownloadResult(dest, done, digest, md5.hexdigest(), resumed_from)


def _lost(name: str, done: int, total: Optional[int], why: str = "the connection was closed") -> str:
    of = f" of {total}" if total else ""
    return (f"download of {name} stopped after {done}{of} bytes ({why}); the part is kept: "
            "download again to resume")
