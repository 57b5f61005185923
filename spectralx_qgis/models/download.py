"""Resumable HTTP(S) download of a model release with its sha256 checked, standard library only.

Release files are 1-4 GB, so an interrupted transfer is resumed, not restarted: bytes go to
`<dest>.part`, and a later call asks the server for the rest (`Range: bytes=N-`). A server that
ignores Range answers 200 with the whole file; the part is then started again from zero. The
sha256 is computed over the whole file (the kept part is hashed first on a resume), and a file
that does not match the expected digest is deleted, never renamed into place. No Qt here: the
model manager runs this in a QgsTask, with QGIS's proxy passed in (proxy.qgis_proxy_url()).

A hostile or broken server cannot make a wrong file look complete or hold the user hostage: the
transfer runs in a worker thread and cancel is polled every POLL_S seconds (also while connecting
or while the server trickles); a 206 answer must be for exactly the bytes asked for; the announced
and received sizes must equal the catalogue's size when there is one (no byte past it is written),
else the server's announced size when no checksum is known; an empty body is never a release; and
the part file is never written through a symbolic link.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import queue
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional, Tuple
from urllib.parse import urlsplit

CHUNK = 1 << 20
POLL_S = 0.1  # cancel is looked at this often, whatever the server does
MAX_DOWNLOAD = 16 << 30  # without a known size: the largest release listed is 4 GB
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
    resumed_from: int  # bytes that were already on disk (0: a fresh download)


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
        if 300 <= exc.code < 400:
            return (
                f"{host} redirects in a loop or without a target (HTTP {exc.code}); the address may have "
                "moved: see the release's source page"
            )
        if exc.code in (404, 410):
            return f"there is no file at {url} (HTTP {exc.code}): it may have moved; see the release's source page"
        if exc.code in (401, 403):
            return (
                f"access denied (HTTP {exc.code}): this release may need a login or an accepted licence "
                "on its source page"
            )
        return f"the server answered HTTP {exc.code} {_clean(exc.reason, 80)}; try again later"
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, socket.gaierror):
        return f"cannot resolve {host} (offline, or a proxy is needed: QGIS ▸ Options ▸ Network)"
    if isinstance(inner, (socket.timeout, TimeoutError)):
        return f"no answer from {host} in time; try again later"
    if isinstance(inner, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(inner, OSError) and inner.strerror:
        return _clean(f"{inner.strerror} ({host})")
    return _clean(f"{type(inner).__name__}: {inner}") if str(inner) else type(inner).__name__


_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


def _content_range(value: Optional[str]) -> Optional[Tuple[int, int, Optional[int]]]:
    """(first, last, total or None) of a `Content-Range: bytes a-b/total` header; None if malformed."""
    m = _RANGE.match(value or "")
    if not m or int(m.group(2)) < int(m.group(1)):
        return None
    return int(m.group(1)), int(m.group(2)), None if m.group(3) == "*" else int(m.group(3))


def _open_part(part: str, append: bool) -> int:
    """The part file, never through a symbolic link (its bytes would land in the link's target)."""
    if os.path.islink(part):
        raise DownloadError(f"{part} is a symbolic link; refusing to write through it: remove it and download again")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(part, flags | getattr(os, "O_BINARY", 0), 0o644)
    except OSError as exc:
        raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None


def _part_size(part: str) -> int:
    if os.path.islink(part):
        raise DownloadError(f"{part} is a symbolic link; refusing to write through it: remove it and download again")
    return os.path.getsize(part) if os.path.isfile(part) else 0


def download(
    url: str,
    dest: str,
    expected_sha256: Optional[str] = None,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    cancelled: Optional[Callable[[], bool]] = None,
    proxy: Optional[str] = None,
    timeout: float = 30.0,
    overwrite: bool = False,
    discard_on_cancel: bool = False,
    chunk_size: int = CHUNK,
    expected_size: Optional[int] = None,
    max_size: int = MAX_DOWNLOAD,
) -> DownloadResult:
    """Download `url` to `dest` (resuming `dest.part` if there is one) and return its digests.

    progress(done, total) is called per chunk (total None when the server does not say);
    cancelled() is polled every POLL_S seconds, also while connecting or while the server is silent.
    `expected_size` (the catalogue's): the server must announce that size, may not send more, and the
    file must end at it. Without it and without `expected_sha256`, the server's announced size must
    be met. Raises DownloadCancelled or DownloadError (one line)."""
    # Long (192 lines) on purpose: one HTTP transfer (connect, resume, redirect limits, size and digest checks,
    # atomic rename) whose socket and part file must close on every path.
    # Long (~165 lines) on purpose: one HTTP transfer whose connection, .part file, digests and
    # cancel/timeout polling share state, and whose every exit must close, keep or remove the part
    # file in one try/finally (docs/reliability.md); split, that cleanup would be spread over helpers.
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
    limit = expected_size or max_size
    offset = _part_size(part)
    if expected_size and offset > expected_size:
        os.remove(part)  # longer than the file can be: another file's bytes
        offset = 0
    stop = cancelled or (lambda: False)

    def cancel_message(done: int) -> str:
        return f"download of {name} cancelled" + (
            "" if discard_on_cancel else f" ({done} bytes kept: download again to resume)"
        )

    def fetch(start: int) -> "_Transfer":
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if start:
            req.add_header("Range", f"bytes={start}-")
        transfer = _Transfer(opener, req, timeout, chunk_size)
        try:
            transfer.wait_headers(stop, timeout + 5)
        except DownloadCancelled:
            transfer.close()  # the worker stops (and closes) when its answer comes
            raise DownloadCancelled(cancel_message(start)) from None
        except BaseException:
            transfer.close()
            raise
        return transfer

    try:
        try:
            transfer = fetch(offset)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not offset:
                raise
            # Range not satisfiable: the part is complete (or longer than the file): start again
            exc.close()
            os.remove(part)
            offset = 0
            transfer = fetch(0)
    except DownloadCancelled:
        if discard_on_cancel and os.path.isfile(part) and not os.path.islink(part):
            os.remove(part)
        raise
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"download of {name} failed: {_reason(exc, url)}") from None

    with transfer:
        resp = transfer.resp
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if status == 206:
            # only the bytes asked for, from where the part ends: anything else would splice two files
            rng = _content_range(resp.headers.get("Content-Range"))
            if rng is None or rng[0] != offset or (length is not None and length != rng[1] - rng[0] + 1):
                raise DownloadError(
                    f"download of {name}: the server sent a partial answer for other bytes than "
                    f"asked (Content-Range '{_clean(resp.headers.get('Content-Range'))}' for bytes "
                    f"{offset}-); the part is kept: try again later"
                )
            total = rng[2] if rng[2] is not None else (rng[1] + 1 if rng[1] + 1 == expected_size else None)
        else:
            offset = 0  # a fresh download, or the server ignored Range and sends everything
            total = length
        if expected_size and total is not None and total != expected_size:
            raise DownloadError(
                f"download of {name}: the server announces {total} bytes, but the release is "
                f"{expected_size} bytes; nothing was written (a different file, or the address "
                "changed): check the release's page"
            )
        if total is not None and total > limit:
            raise DownloadError(
                f"download of {name}: the server announces {total} bytes, more than the "
                f"{limit} allowed; nothing was written"
            )
        resumed_from = offset
        sha, md5 = hashlib.sha256(), hashlib.md5()
        if offset:
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    sha.update(chunk)
                    md5.update(chunk)
        done = offset
        fd = _open_part(part, append=bool(offset))
        try:
            with os.fdopen(fd, "ab" if offset else "wb") as out:
                if progress:
                    progress(done, total)
                while True:
                    if stop():
                        raise DownloadCancelled(cancel_message(done))
                    try:
                        chunk, failure = transfer.next_chunk(stop)
                    except DownloadCancelled:
                        raise DownloadCancelled(cancel_message(done)) from None
                    if chunk:
                        if done + len(chunk) > limit:
                            raise _TooLong(name, limit, expected_size)
                        out.write(chunk)
                        sha.update(chunk)
                        md5.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                    if failure is not None:
                        if isinstance(failure, http.client.IncompleteRead):
                            raise DownloadError(_lost(name, done, total)) from None
                        if isinstance(failure, (OSError, http.client.HTTPException)):
                            raise DownloadError(_lost(name, done, total, _reason(failure, url))) from None
                        raise DownloadError(
                            _lost(name, done, total, _clean(f"{type(failure).__name__}: " f"{failure}"))
                        ) from None
                    if not chunk:
                        break
                out.flush()
                os.fsync(out.fileno())
        except DownloadCancelled:
            if discard_on_cancel and os.path.exists(part):
                os.remove(part)
            raise
        except _TooLong as exc:
            os.remove(part)  # more than the file can be: never a resumable part
            raise DownloadError(str(exc)) from None
        except OSError as exc:  # writing: disk full, permissions
            if exc.errno == errno.ENOSPC:
                raise DownloadError(
                    f"disk full while writing {part} ({done} bytes written"
                    + (f" of {total}" if total else "")
                    + "): free some space, then "
                    "download again to resume"
                ) from None
            raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None

    if done == 0:
        os.remove(part)
        raise DownloadError(f"download of {name}: the server sent an empty file; nothing was kept: try again later")
    want = expected_size or total
    if want is not None and done != want:
        raise DownloadError(_lost(name, done, want))
    if want is None and not expected:
        raise DownloadError(
            f"download of {name}: the server did not say how long the file is and no size or "
            f"checksum is known to check it, so {done} bytes cannot be called complete; the part "
            "is kept as " + os.path.basename(part)
        )
    digest = sha.hexdigest()
    if expected and digest != expected:
        os.remove(part)
        raise DownloadError(
            f"{name}: sha256 {digest} does not match the published {expected}; the "
            "download was deleted (damaged in transfer or a different file): try again"
        )
    if os.path.exists(dest) and not overwrite:
        raise DownloadError(f"{dest} appeared while downloading; the download is kept as {part}")
    os.replace(part, dest)
    return DownloadResult(dest, done, digest, md5.hexdigest(), resumed_from)


class _TooLong(Exception):
    def __init__(self, name: str, limit: int, expected_size: Optional[int]):
        why = f"the release's size, {limit} bytes" if expected_size else f"the {limit} bytes allowed"
        super().__init__(
            f"download of {name}: the server sent more than {why}; the download was deleted "
            "(a different file, or a server that never stops): check the release's page"
        )


class _Transfer:
    """One HTTP request in a worker thread, handed over in chunks through a small queue: the caller
    polls every POLL_S seconds, so cancel and deadlines act at once even while the server is slow to
    connect, sends its headers a byte at a time or trickles the body (a blocked read cannot be
    interrupted from outside). An abandoned worker ends by its socket timeout and writes nothing."""

    def __init__(self, opener, req, timeout: float, chunk_size: int):
        self.resp = None
        self._queue: "queue.Queue" = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(opener, req, timeout, chunk_size), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, opener, req, timeout, chunk_size) -> None:
        try:
            resp = opener.open(req, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001  handed to the caller
            self._put(("error", exc))
            return
        try:
            if not self._put(("headers", resp)):
                return
            # small reads (what has arrived), handed over as chunk_size pieces, or sooner when the
            # server is slow, so that a trickle is still written and kept for a resume
            read = getattr(resp, "read1", resp.read)
            buf, since = bytearray(), time.monotonic()
            while not self._stop.is_set():
                try:
                    data = read(chunk_size - len(buf))
                except BaseException as exc:  # noqa: BLE001  a timeout, a reset: after what arrived
                    data = getattr(exc, "partial", b"")
                    self._put(("data", bytes(buf) + data, exc))
                    return
                buf += data
                if buf and (len(buf) >= chunk_size or not data or time.monotonic() - since >= POLL_S):
                    if not self._put(("data", bytes(buf), None)):
                        return
                    buf, since = bytearray(), time.monotonic()
                if not data:
                    self._put(("data", b"", None))
                    return
        finally:
            resp.close()

    def _get(self, stop: Callable[[], bool], deadline: Optional[float] = None):
        while True:
            if stop():
                raise DownloadCancelled("cancelled")
            try:
                return self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    raise socket.timeout("no answer") from None
                continue

    def wait_headers(self, stop: Callable[[], bool], seconds: float) -> None:
        item = self._get(stop, time.monotonic() + seconds)
        if item[0] == "error":
            raise item[1]
        self.resp = item[1]

    def next_chunk(self, stop: Callable[[], bool]):
        """(bytes, exception or None); b"" at the end."""
        _kind, data, failure = self._get(stop)
        return data, failure

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._stop.set()
        sock = getattr(getattr(getattr(self.resp, "fp", None), "raw", None), "_sock", None)
        try:  # wake a worker blocked in a read (best effort; it would end by its timeout anyway)
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _clean(text: object, limit: int = 160) -> str:
    """Server-sent text for a one-line message: control characters out, whitespace folded, short."""
    s = "".join(c if c.isprintable() else " " for c in str(text))
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _lost(name: str, done: int, total: Optional[int], why: str = "the connection was closed") -> str:
    of = f" of {total}" if total else ""
    return f"download of {name} stopped after {done}{of} bytes ({why}); the part is kept: " "download again to resume"
