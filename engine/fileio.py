"""Writing files without ever leaving half a file or touching an input.

* `atomic_output(target)`: write to a short temporary name in the target's folder (same file system,
  so the rename is atomic), fsync, rename; on any failure or interruption the temporary file is
  removed and the target is untouched. A failed write becomes one line ("no space left on … while
  writing …; nothing was written").
* `check_outputs(outputs, inputs, overwrite)`: the one check every subcommand runs before any work:
  an output may not be (or resolve to) an input, may not exist without overwrite, and must have a
  folder it can be written to and a name the file system accepts.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .errors import InputError, OutputError

TEMP_PREFIX = ".sx-"  # temporary names: ".sx-<8 hex>.tmp<ext>", whatever the target's length
_FICLONE = 0x40049409  # Linux ioctl: share the source's blocks (btrfs, XFS, …)
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd")
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def temp_name(target: str, ext: Optional[str] = None) -> str:
    """A short hidden name beside `target`: a 240-character target still gets a valid temporary name."""
    folder = os.path.dirname(os.path.abspath(target))
    ext = os.path.splitext(target)[1] if ext is None else ext
    ext = ext if len(ext) <= 12 else ""  # drivers may want the extension; never let it grow the name
    return os.path.join(folder, f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}.tmp{ext}")


def _mount_point(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def is_out_of_space(exc: BaseException, folder: Optional[str] = None) -> bool:
    """A write failed for lack of space: errno, the library's text, or a folder with no room left."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return True
    text = str(exc).lower()
    if "no space left" in text or "os error 28" in text or "disk full" in text or "storagefull" in text:
        return True
    if folder:
        try:
            return shutil.disk_usage(folder).free < 64 * 1024
        except OSError:
            return False
    return False


def write_error(exc: BaseException, target: str) -> OutputError:
    """One line for a write that failed; the caller has already removed what it wrote."""
    folder = os.path.dirname(os.path.abspath(target))
    if is_out_of_space(exc, folder):
        return OutputError(f"no space left on {_mount_point(folder)} while writing {target}; nothing was written")
    code = getattr(exc, "errno", None)
    if code == errno.ENAMETOOLONG:
        return OutputError(
            f"the file name {os.path.basename(target)[:40]}… is too long for the file system; "
            "choose a shorter output name"
        )
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(
            f"permission denied while writing {target}; choose a folder you can write to; " "nothing was written"
        )
    if code == errno.EFBIG:
        return OutputError(
            f"{target} is larger than the file system allows (e.g. FAT32's 4 GB); choose "
            "another drive; nothing was written"
        )
    if code == errno.EROFS:
        return OutputError(f"{folder} is on a read-only file system; nothing was written")
    text = str(exc).strip()
    reason = getattr(exc, "strerror", None) or (text.splitlines()[0][:200] if text else type(exc).__name__)
    return OutputError(f"cannot write {target}: {reason}; nothing was written")


def remove_quietly(*paths: Optional[str]) -> None:
    for p in paths:
        try:
            if p and os.path.lexists(p):
                os.remove(p)
        except OSError:
            pass


def _fsync_path(path: str, directory: bool = False) -> None:
    if directory:  # makes the rename durable; not every system can open or sync a folder (Windows)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
        return
    with open(path, "rb+") as f:  # Windows needs a writable handle to flush a file
        os.fsync(f.fileno())


def fsync_file(path: str) -> None:
    """Flush a finished file to disk (a full disk with delayed allocation reports ENOSPC here)."""
    _fsync_path(path)


@contextmanager
def atomic_output(target: str, ext: Optional[str] = None) -> Iterator[str]:
    """Yield a temporary path to write; on success it is fsynced and renamed onto `target`.

    Any exception (disk full, Ctrl-C, SIGTERM raised as KeyboardInterrupt) removes the temporary file
    and its GDAL sidecar; OS and library write errors come out as one-line `OutputError`s.
    """
    tmp = temp_name(target, ext)
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, target)
        _fsync_path(os.path.dirname(os.path.abspath(target)), directory=True)
    except BaseException as exc:
        remove_quietly(tmp, tmp + ".aux.xml")
        if isinstance(exc, (KeyboardInterrupt, SystemExit, OutputError)):
            raise
        if isinstance(exc, OSError) or is_out_of_space(exc):
            raise write_error(exc, target) from None
        raise


def write_bytes(target: str, data: Union[bytes, bytearray, memoryview]) -> None:
    with atomic_output(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(target: str, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def _reflink(src: str, dst: str) -> bool:
    try:
        import fcntl  # POSIX only; elsewhere there is no reflink to try

        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
        return True
    except (ImportError, OSError):
        remove_quietly(dst)
        return False


class _NoReflink(Exception):
    pass


def copy_file(src: str, target: str, allow_copy: bool = True) -> Optional[str]:
    """Copy atomically; a reflink (shared blocks, copy-on-write) where the file system offers one.
    Returns "reflink", "copy", or None when only a reflink was allowed and none was possible.
    Never a hard link: a later write to one name would change both."""
    how = "copy"
    try:
        with atomic_output(target) as tmp:
            if _reflink(src, tmp):
                how = "reflink"
            elif not allow_copy:
                raise _NoReflink
            else:
                with open(src, "rb") as s, open(tmp, "wb") as d:
                    shutil.copyfileobj(s, d, 1 << 22)
    except _NoReflink:
        return None
    return how


def explain_failure(exc: BaseException, reading: Optional[str] = None, writing: Optional[str] = None) -> BaseException:
    """A library failure (GDAL's multi-line text) as one line: a full disk or failed write names the
    output, anything else names the input as damaged. Our own errors and bugs pass through as they are."""
    from .errors import RasterError, SpectralXError

    if isinstance(exc, SpectralXError):
        return exc
    library = (type(exc).__module__ or "").startswith(("rasterio", "fiona", "safetensors"))
    if not (library or isinstance(exc, OSError)):
        return exc
    text = " ".join(str(exc).split())
    folder = os.path.dirname(os.path.abspath(writing)) if writing else None
    low = text.lower()
    if writing and is_out_of_space(exc, folder):
        return write_error(exc, writing)
    # GDAL says "Read or write failed" either way: the file it names (or the block call) decides
    reading_failed = reading and (os.path.basename(reading) in text or "ireadblock" in low or "tiffread" in low)
    if writing and not reading_failed and ("write" in low or "create" in low or TEMP_PREFIX in text):
        return OutputError(f"cannot write {writing}: {text[:160]}; nothing was written")
    if reading:
        return RasterError(
            f"cannot read {reading}: {text[:160]}; the file may be damaged or truncated: " "copy or export it again"
        )
    return exc


# --- the one output/input check ------------------------------------------------------------------


def raster_files(path: str) -> List[str]:
    """The files GDAL reads for a raster (ENVI .hdr, .aux.xml, .ovr, …); just `path` if it cannot say."""
    try:
        import rasterio

        from .raster_io import open_raster

        with rasterio.Env(CPL_LOG_ERRORS="OFF"):
            with open_raster(path) as ds:
                return [path] + [f for f in (ds.files or []) if f != path]
    except Exception:
        return [path]


def vector_files(path: str) -> List[str]:
    """A shapefile is several files; writing over any of them destroys the labels."""
    stem, ext = os.path.splitext(path)
    if ext.lower() != ".shp":
        return [path]
    return [path] + [
        stem + e for e in _SHAPEFILE_PARTS + tuple(x.upper() for x in _SHAPEFILE_PARTS) if os.path.exists(stem + e)
    ]


def same_file(a: str, b: str) -> bool:
    """a and b name one file: same real path (symlinks), or same device and inode (hard links, and
    another spelling on a case-insensitive file system)."""
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    if os.path.normcase(ra) == os.path.normcase(rb):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def name_max(folder: str) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf on Windows: NTFS allows 255
        return 255


Output = Union[str, Tuple[str, str]]  # a path, or (path, what it is: "checkpoint", "class raster", …)


def check_outputs(
    outputs: Sequence[Optional[Output]], inputs: Iterable[Optional[str]] = (), overwrite: bool = False
) -> List[str]:
    """Refuse, with one line, any output that is an input, exists (without overwrite), is a folder,
    has no writable folder, or has a name too long for the file system. Returns the absolute paths."""
    ins = [os.path.abspath(os.path.expanduser(str(p))) for p in inputs if p]
    done: List[str] = []
    for item in outputs:
        if not item:
            continue
        path, what = item if isinstance(item, tuple) else (item, "output")
        path = os.path.abspath(os.path.expanduser(str(path)))
        name = os.path.basename(path)
        folder = os.path.dirname(path)
        for i in ins:
            if same_file(path, i):
                shown = "" if os.path.normcase(os.path.realpath(i)) == os.path.normcase(path) else f" ({i})"
                raise OutputError(
                    f"{what} {path} is one of the inputs{shown}; writing it would destroy "
                    "that input: choose another output name"
                )
        if any(same_file(path, d) for d in done):
            raise OutputError(f"two outputs are both {path}; give each its own file name")
        if os.path.isdir(path):
            raise OutputError(f"{what} {path} is a folder; give a file name inside it")
        if not os.path.isdir(folder):
            raise OutputError(f"the folder of {what} {path} does not exist; create {folder} first")
        if len(name.encode("utf-8", "surrogateescape")) > name_max(folder):
            raise OutputError(
                f"the {what} file name is {len(name.encode('utf-8', 'surrogateescape'))} bytes "
                f"long; the file system allows {name_max(folder)}: choose a shorter name"
            )
        if os.path.lexists(path) and not overwrite:
            raise OutputError(
                f"{what} {path} already exists; pass --overwrite to replace it, " "or choose another name"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(
                f"cannot write {what} {path}: folder {folder} is not writable; " "choose a folder you can write to"
            )
        done.append(path)
    return done


def check_inputs(paths: Iterable[Tuple[Optional[str], str]], folders_ok: bool = False) -> None:
    """Every (path, what) given exists, is a file (not a folder; `folders_ok` for vector labels,
    which OGR may read from a folder, e.g. a FileGDB .gdb) and is readable."""
    for path, what in paths:
        if not path:
            continue
        if os.path.isdir(path) and not folders_ok:
            raise InputError(f"{what} {path} is a folder, not a file; give the file itself")
        if not os.path.exists(path):
            raise InputError(f"{what} not found: {path}")
        if not os.access(path, os.R_OK):
            raise InputError(f"{what} {path} cannot be read (permission denied)")


__all__ = [
    "TEMP_PREFIX",
    "temp_name",
    "atomic_output",
    "fsync_file",
    "write_bytes",
    "write_text",
    "copy_file",
    "write_error",
    "is_out_of_space",
    "explain_failure",
    "remove_quietly",
    "raster_files",
    "vector_files",
    "same_file",
    "check_outputs",
    "check_inputs",
]
