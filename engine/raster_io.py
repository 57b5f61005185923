"""Opening a raster for reading: the one place that turns every way it can fail into one line.

Paths may be files, GDAL virtual paths (`/vsicurl/…`, `/vsis3/…`, `/vsizip/…`) or URLs; only local
paths are checked on disk first. GDAL's own text (often several lines, repeating the path) is cut to
its first line, and the common cases get a sentence that says what to do.
"""

from __future__ import annotations

import os

from .errors import RasterError


def is_local(path: str) -> bool:
    """False for GDAL virtual file systems and URLs, which only GDAL can check."""
    return not (path.startswith("/vsi") or "://" in path)


def _check_local(path: str, what: str) -> None:
    if is_local(path):
        if not os.path.exists(path):
            raise RasterError(f"{what} {path} does not exist; check the path")
        if os.path.isfile(path) and not os.access(path, os.R_OK):
            raise RasterError(f"{what} {path} cannot be read (permission denied)")


def open_raster(path: str, what: str = "raster"):
    """An open rasterio dataset (use it as a context manager), or RasterError naming `what`, the path,
    the cause and the remedy on one line. Every raster read in the engine starts here (open_gdal
    below for the two things only GDAL's own bindings do)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    path = os.fspath(path)
    _check_local(path, what)
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        if is_local(path) and os.path.isdir(path):
            raise RasterError(
                f"{what} {path} is a folder, not a raster GDAL can open; give the raster " "file itself"
            ) from None
        if "not recognized as" in first or "not a supported file format" in first:
            raise RasterError(
                f"{what} {path} is not a raster GDAL can read (unknown format, or the file " "is damaged or truncated)"
            ) from None
        raise RasterError(f"cannot read {what} {path}: {first}") from None


def open_gdal(path: str, what: str = "raster", gdal=None):
    """The raster as a GDAL dataset (`osgeo.gdal`), with open_raster's one-line errors.

    The one place the engine opens a raster with GDAL's own Python bindings instead of rasterio, and
    why: vectorize runs GDAL's algorithms (SieveFilter, Polygonize, RasterizeLayer), which take
    osgeo datasets, and a label raster's category names (GetCategoryNames) are GDAL's alone. Inside
    QGIS, osgeo is QGIS's own GDAL, the only one that may be loaded in its process (vector_io).
    `gdal` is the module to use (vector_io.gdal_exceptions gives it with exceptions on)."""
    if gdal is None:
        from osgeo import gdal
    path = os.fspath(path)
    _check_local(path, what)
    try:
        ds = gdal.Open(path)
    except RuntimeError as exc:  # exceptions on
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RasterError(f"cannot read {what} {path}: {first}") from None
    if ds is None:
        raise RasterError(
            f"{what} {path} is not a raster GDAL can read (unknown format, or the file is " "damaged or truncated)"
        )
    return ds
