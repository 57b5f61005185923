"""Which field of a polygon layer holds the class: one rule for the panel and Processing.

A text field is preferred, by the names analysts use for classes first; an identifier ('fid') is
never a class. A field whose value differs on every polygon of a layer with many polygons is an
identifier, not a class: training on it would make every polygon its own class.
"""

from __future__ import annotations

from typing import Iterable, Optional

CLASS_NAMES = (
    "class",
    "classname",
    "class_name",
    "label",
    "landcover",
    "land_cover",
    "lulc",
    "name",
    "category",
    "type",
)
ID_NAMES = ("fid", "id", "ogc_fid", "objectid", "gid", "pk", "uid")
# with this many polygons or more, one value per polygon is an identifier (a few polygons, one per
# class, is a normal first round)
UNIQUE_MIN_FEATURES = 8


def _is_text(field) -> bool:
    from qgis.PyQt.QtCore import QVariant

    return field.type() == QVariant.Type.String  # scoped: the same in Qt5 and Qt6


def default_class_field(fields) -> str:
    """The field to pre-select in a QgsFields: a text field by a class-like name, any text field,
    else the first field that is not an identifier; "" when there is none."""
    names = [f.name() for f in fields]
    text = [f.name() for f in fields if _is_text(f)]
    for guess in CLASS_NAMES:
        for name in text:
            if name.lower() == guess:
                return name
    if text:
        return text[0]
    others = [n for n in names if n.lower() not in ID_NAMES]
    return others[0] if others else ""


def identifier_problem(field: str, values: Iterable, what: str, control: str) -> Optional[str]:
    """One line when `field`'s values look like an identifier rather than a class, else None.
    `control` names where the analyst picks the field (the panel's Class field, CLASS_FIELD)."""
    seen, n = set(), 0
    for v in values:
        if v is None or (hasattr(v, "isNull") and v.isNull()):
            continue
        n += 1
        seen.add(v)
    unique = n >= 2 and len(seen) == n
    if unique and (field.lower() in ID_NAMES or n >= UNIQUE_MIN_FEATURES):
        return (
            f"'{field}' has a different value on every one of the {n} polygons of {what}: it identifies "
            f"polygons rather than classes; choose the field that holds the class names in {control}"
        )
    return None
