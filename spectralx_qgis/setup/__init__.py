"""Dependencies and their installer: the pinned list, the dependency check and its guidance, finding QGIS's
Python, the profile's package folder, the installer (dialog and worker), the GPU check and the verifier."""
