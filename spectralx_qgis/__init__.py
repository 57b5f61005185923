"""SpectralX for QGIS: spectral land-cover segmentation with foundation models.

Loading the plugin imports only QGIS/Qt; torch, rasterio and the engine are imported on first use,
so the plugin loads (and explains what to install) even when they are missing.
"""


def classFactory(iface):  # noqa: N802 (QGIS API)
    # packages the installer put in the profile's folder go on sys.path before anything imports them
    try:
        from .setup.site_dir import activate

        activate()
    except Exception as exc:  # noqa: BLE001  never stop QGIS from loading the plugin over this
        import sys

        print(f"SpectralX: the plugin's package folder was not activated: {exc}", file=sys.stderr)
    from .plugin import SpectralXPlugin

    return SpectralXPlugin(iface)
