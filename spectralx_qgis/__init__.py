"""SpectralX for QGIS: spectral land-cover segmentation with foundation models.

Loading the plugin imports only QGIS/Qt; torch, rasterio and the engine are imported on first use,
so the plugin loads (and explains what to install) even when they are missing.
"""


def classFactory(iface):  # noqa: N802 (QGIS API)
    from .plugin import SpectralXPlugin
    return SpectralXPlugin(iface)
