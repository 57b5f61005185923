"""QGIS styles (QML) for the vector outputs: class polygons and reference points, in class colours.

Both are categorized renderers on the class value with the class raster's colours and names; the
points' `reference` field gets a drop-down of the class names (QGIS value map), so the analyst fills
it in QGIS by picking a class rather than typing a number.
"""

from __future__ import annotations

from typing import Dict, Optional
from xml.sax.saxutils import quoteattr

FALLBACK = [
    "#1f78b4",
    "#33a02c",
    "#e31a1c",
    "#ff7f00",
    "#6a3d9a",
    "#b15928",
    "#a6cee3",
    "#b2df8a",
    "#fb9a99",
    "#fdbf6f",
    "#cab2d6",
    "#ffff99",
]


def _rgba(color: str) -> str:
    c = color.lstrip("#")
    return f"{int(c[0:2], 16)},{int(c[2:4], 16)},{int(c[4:6], 16)},255"


def _props(props: Dict[str, str]) -> str:
    # QGIS 3.22 reads the <Option> map; older readers the <prop> list: both, same values
    options = "".join(f'<Option name={quoteattr(k)} value={quoteattr(v)} type="QString"/>' for k, v in props.items())
    legacy = "".join(f"<prop k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in props.items())
    return f'<Option type="Map">{options}</Option>{legacy}'


def _symbol(index: int, kind: str, color: str) -> str:
    if kind == "fill":
        layers = [
            (
                "SimpleFill",
                {
                    "color": _rgba(color),
                    "outline_color": "35,35,35,255",
                    "outline_width": "0.1",
                    "outline_style": "solid",
                    "style": "solid",
                },
            )
        ]
    elif kind == "target":
        # places to visit (suggest): the class colour inside a white ring with a dark edge, so a point
        # stands out on a map painted in the same class colours
        layers = [
            (
                "SimpleMarker",
                {
                    "color": "255,255,255,255",
                    "outline_color": "0,0,0,255",
                    "outline_width": "0.3",
                    "name": "circle",
                    "size": "4.4",
                },
            ),
            (
                "SimpleMarker",
                {
                    "color": _rgba(color),
                    "outline_color": "0,0,0,255",
                    "outline_width": "0.2",
                    "name": "circle",
                    "size": "2.4",
                },
            ),
        ]
    else:
        layers = [
            (
                "SimpleMarker",
                {
                    "color": _rgba(color),
                    "outline_color": "0,0,0,255",
                    "outline_width": "0.3",
                    "name": "circle",
                    "size": "2.6",
                },
            )
        ]
    body = "".join(
        f'<layer class="{cls}" enabled="1" locked="0" pass="0">{_props(props)}</layer>' for cls, props in layers
    )
    symbol_type = "fill" if kind == "fill" else "marker"
    return f'<symbol type="{symbol_type}" name="{index}" alpha="1" clip_to_extent="1" force_rhr="0">' f'{body}</symbol>'


def categorized_qml(
    field: str,
    names: Dict[int, str],
    colours: Dict[int, str],
    kind: str = "fill",
    value_map_field: Optional[str] = None,
) -> str:
    """A categorized renderer on `field` (class values), one category per class; `value_map_field`
    gets a drop-down of the class names."""
    values = sorted(names)
    cats = "\n".join(
        f'      <category value="{v}" symbol="{i}" label={quoteattr(names[v])} render="true"/>'
        for i, v in enumerate(values)
    )
    symbols = "\n".join(
        "      " + _symbol(i, kind, colours.get(v) or FALLBACK[i % len(FALLBACK)]) for i, v in enumerate(values)
    )
    form = ""
    if value_map_field:
        entries = "".join(
            f'<Option type="Map"><Option name={quoteattr(f"{v} {names[v]}")} value="{v}" ' 'type="QString"/></Option>'
            for v in values
        )
        form = (
            f'  <fieldConfiguration><field name={quoteattr(value_map_field)} configurationFlags="None">'
            f'<editWidget type="ValueMap"><config><Option type="Map"><Option name="map" type="List">{entries}'
            '</Option></Option></config></editWidget></field></fieldConfiguration>\n'
        )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0-Białowieża" styleCategories="AllStyleCategories">
  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" forceraster="0">
    <categories>
{cats}
    </categories>
    <symbols>
{symbols}
    </symbols>
  </renderer-v2>
{form}</qgis>
"""


__all__ = ["categorized_qml"]
