"""Element-level hit: is the predicted point inside the element the user tapped?

Usage: ``element_hit(tree_xml_path, gt_px, pred_px) -> True | False | None``

The element is the smallest clickable node (accessibility tree XML, ``bounds="[x1,y1][x2,y2]"``)
that contains the ground-truth point; None when there is no tree or no such node.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from functools import lru_cache

_BOUNDS = re.compile(r"\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]")


@lru_cache(maxsize=256)
def clickable_boxes(path: str) -> tuple[tuple[int, int, int, int], ...]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return ()
    boxes = []
    for node in root.iter("node"):
        if node.get("clickable") == "true":
            m = _BOUNDS.fullmatch(node.get("bounds", ""))
            if m:
                boxes.append(tuple(int(v) for v in m.groups()))
    return tuple(boxes)


def element_hit(tree: str, gt_px, pred_px) -> bool | None:
    if not tree:
        return None
    inside = [b for b in clickable_boxes(tree) if b[0] <= gt_px[0] <= b[2] and b[1] <= gt_px[1] <= b[3]]
    if not inside:
        return None
    x1, y1, x2, y2 = min(inside, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    return x1 <= pred_px[0] <= x2 and y1 <= pred_px[1] <= y2
