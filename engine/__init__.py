"""SpectralX engine: spectral adaptation of frozen optical foundation models, without QGIS.

Import name `spectralx` (mapped from the repository's `engine/` folder). Nothing here imports QGIS or Qt.
"""

__version__ = "0.1.0"
