"""Referring-expression grounding as CoIN scores it (RefCOCO/RefCOCO+/RefCOCOg, "Grounding" in its sequence).

The box format is LLaVA-1.5's: "[x1, y1, x2, y2]", corners normalised by the longer image side after padding to a
square (so both boxes share one scale and `size` does not change the IoU). The released eval_grounding.py (CoIN;
copied unchanged into HiDe-LLaVA and MCITlib) reads the test record's `answer_bbox` string and the prediction,
and counts a prediction right when IoU > 0.5 (strictly). Its prediction parser removes the brackets and then also
the first and the last character of what is left (`pred[1:-1]`), so "[0.12, 0.34, 0.56, 0.78]" is read as
0.12, 0.34, 0.56, 0.7 — that parser is `parse_released` and is the default, for numbers comparable to the
published ones; `parse_numbers` reads the first four numbers as written. A prediction that does not parse to
four numbers scores 0 (the released script skips it, leaving it in the denominator).
"""

from __future__ import annotations

import re

IOU_THRESHOLD = 0.5
PARSERS = ("released", "numbers")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?|-?\.\d+")


def parse_answer_box(text: str) -> list[float]:
    """A test record's `answer_bbox` ("[x1, y1, x2, y2]"), as the released script reads it."""
    return [float(x) for x in str(text).replace("[", "").replace("]", "").split(",")]


def parse_released(prediction: str) -> list[float] | None:
    """eval_grounding.py's parse of a prediction: brackets removed, then `[1:-1]`, split on commas; None unless 4."""
    try:
        values = [float(x) for x in prediction.replace("[", "").replace("]", "")[1:-1].split(",")]
    except ValueError:
        return None
    return values if len(values) == 4 else None


def parse_numbers(prediction: str) -> list[float] | None:
    """The first four numbers of the prediction as written; None if it has fewer."""
    values = [float(x) for x in _NUMBER.findall(prediction)]
    return values[:4] if len(values) >= 4 else None


def iou(box: list[float], other: list[float]) -> float:
    """eval_grounding.calculate_iou on (x1, y1, x2, y2) boxes; 0 where the union is not positive."""
    x1, y1, x2, y2 = box
    u1, v1, u2, v2 = other
    inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
    union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter
    return inter / union if union > 0 else 0.0


def grounding_correct(prediction: str, answer_bbox: str, parser: str = "released") -> float:
    """1.0 when the predicted box overlaps the answer box with IoU > 0.5, else 0.0."""
    if parser not in PARSERS:
        raise ValueError(f"grounding parser must be one of {', '.join(PARSERS)}, got '{parser}'")
    box = (parse_released if parser == "released" else parse_numbers)(prediction)
    if box is None:
        return 0.0
    try:
        gold = parse_answer_box(answer_bbox)
    except ValueError:
        return 0.0
    if len(gold) != 4:
        return 0.0
    return float(iou(box, gold) > IOU_THRESHOLD)
