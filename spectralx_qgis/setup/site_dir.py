"""The plugin-owned package folder: where the installer puts what QGIS's Python lacks.

It lives in the QGIS profile (no admin rights needed, removed with the profile), one subfolder per
Python version and platform (binary wheels fit only those):

    <profile>/spectralx/python-packages/python3.11-linux-x86_64/     the installed packages
    <profile>/spectralx/python-packages/python3.11-linux-x86_64.pending   finished, swapped in at next start
    <profile>/spectralx/python-packages/.staging-…                   an install in progress

A folder is used only if it holds the marker the installer writes after verifying it, so a cancelled
or crashed install (a staging folder) is never put on sys.path; stale staging folders are removed at
the next start. A finished install that could not replace the folder in use (Windows keeps loaded
DLLs locked) waits as `.pending` and is swapped in before anything is imported at the next start.
Swaps hold a lock on the root (two QGIS windows, or two installs, would otherwise rename the same
folders under each other).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import threading
import time
from typing import Iterator, Optional

from .python_finder import site_tag

MARKER = "spectralx-install.json"
STAGING_PREFIX = ".staging-"
_THREAD_LOCK = threading.Lock()


@contextlib.contextmanager
def swap_lock(root: str) -> Iterator[None]:
    """Exclusive across threads and processes while folders in `root` are renamed. POSIX: flock on
    the root folder itself (nothing is added to it); Windows: a lock file in the temp folder."""
    os.makedirs(root, exist_ok=True)
    with _THREAD_LOCK:
        if os.name == "nt":
            import hashlib
            import msvcrt

            key = hashlib.sha1(os.path.abspath(root).lower().encode()).hexdigest()[:16]
            with open(os.path.join(tempfile.gettempdir(), f"spectralx-swap-{key}.lock"), "a+b") as f:
                while True:
                    try:
                        msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)  # itself retries for 10 s
                        break
                    except OSError:
                        continue
                try:
                    yield
                finally:
                    f.seek(0)
                    msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fd = os.open(root, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock


def _remove(path: str) -> None:
    """A folder, file or link, whatever it is (a plain file or a link left where a folder belongs)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            os.remove(path)
        except OSError:
            pass


def default_root() -> str:
    from qgis.core import QgsApplication

    return os.path.join(QgsApplication.qgisSettingsDirPath(), "spectralx", "python-packages")


def current_tag() -> str:
    return site_tag(sys.version_info[:2], sysconfig.get_platform())


def folder(root: str, tag: Optional[str] = None) -> str:
    return os.path.join(root, tag or current_tag())


def record(path: str) -> Optional[dict]:
    """The installer's record of a finished, verified folder; None for anything else."""
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def new_staging(root: str, tag: str) -> str:
    os.makedirs(root, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{tag}-{os.getpid()}-", dir=root)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_staging(root: str, max_age_s: float = 24 * 3600) -> None:
    """Staging folders left by a killed or crashed install (their process is gone, or they are old)."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        if not name.startswith(STAGING_PREFIX):
            continue
        path = os.path.join(root, name)
        try:
            pid = int(name[len(STAGING_PREFIX) :].rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            pid = -1
        old = time.time() - os.path.getmtime(path) > max_age_s
        if old or pid <= 0 or not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)


def _swap_in(pending: str, final: str) -> bool:
    """Replace `final` with `pending`; False when `final` is in use and cannot be moved."""
    old = None
    if os.path.exists(final):
        old = f"{final}.old-{os.getpid()}"
        try:
            os.replace(final, old)
        except OSError:
            return False
    os.replace(pending, final)
    if old:
        _remove(old)
    return True


def commit(staging: str, root: str, tag: str, data: dict, in_use: bool) -> bool:
    """Mark a verified staging folder finished and move it into place. Returns True when it is the
    live folder now, False when it waits as `.pending` for the next start (the old one is in use)."""
    with open(os.path.join(staging, MARKER), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    final = folder(root, tag)
    pending = final + ".pending"
    with swap_lock(root):
        _remove(pending)
        os.replace(staging, pending)
        if in_use:
            return False
        return _swap_in(pending, final)


def activate(root: Optional[str] = None, tag: Optional[str] = None) -> Optional[str]:
    """At plugin start: finish a pending install, drop stale staging folders, and put the verified
    folder first on sys.path (so its packages win over older copies QGIS's Python may hold).
    Returns the folder added, or None."""
    root = root or default_root()
    final = folder(root, tag)
    remove_stale_staging(root)
    pending = final + ".pending"
    if record(pending) is not None:
        try:
            with swap_lock(root):
                if record(pending) is not None:
                    _swap_in(pending, final)
        except OSError:  # a read-only profile: use what is there
            pass
    if record(final) is None:
        return None
    if final not in sys.path:
        sys.path.insert(0, final)
    return final
