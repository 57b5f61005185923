"""Plugin icons: inside the plugin folder when packaged, from resources/icons/ in a checkout."""

from __future__ import annotations

import os

from qgis.PyQt.QtGui import QIcon

HERE = os.path.dirname(os.path.abspath(__file__))
_DIRS = [os.path.join(HERE, "icons"), os.path.join(os.path.dirname(HERE), "resources", "icons")]


def icon_path(name: str = "spectralx.svg") -> str:
    for d in _DIRS:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    return ""


def icon(name: str = "spectralx.svg") -> QIcon:
    p = icon_path(name)
    return QIcon(p) if p else QIcon()
