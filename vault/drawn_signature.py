"""A drawn signature: the strokes a signer drew on the signing page's canvas, kept as vectors and stamped as
PDF path operators, so the sealed document carries the drawing itself and no image decoder is involved.

The page sends ``strokes``: a list of strokes, each a list of ``[x, y]`` points in the canvas's own unit square
(0..1 each way, y downwards as a canvas has it). They are bounded (count and points) and stored as given; the
seal fits them into the field's rectangle, keeping the canvas's aspect ratio.
"""

from __future__ import annotations

from typing import Any

from compliance.errors import InvalidInput

MAX_STROKES = 100
MAX_POINTS = 3000  # over all strokes: about 42 KB of JSON, inside EVAULT_MAX_JSON_BYTES (64 KB)
CANVAS_ASPECT = 500 / 150  # the signing page's canvas: width / height

Strokes = list[list[list[float]]]


def _bad(message: str) -> InvalidInput:
    return InvalidInput("Signing.InvalidSignature", message, field="signature.strokes")


def _coordinate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _bad("each point is [x, y] with x and y from 0 to 1")
    return round(float(value), 4)


def check_strokes(value: Any) -> Strokes:
    """The strokes as stored, or 400 ``Signing.InvalidSignature``: at least one stroke of two points."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_STROKES:
        raise _bad(f"a drawn signature has 1 to {MAX_STROKES} strokes")
    strokes: Strokes = []
    total = 0
    for stroke in value:
        if not isinstance(stroke, list) or not stroke:
            raise _bad("each stroke is a non-empty list of points")
        total += len(stroke)
        if total > MAX_POINTS:
            raise _bad(f"a drawn signature has at most {MAX_POINTS} points")
        points = []
        for point in stroke:
            if not isinstance(point, list) or len(point) != 2:
                raise _bad("each point is [x, y] with x and y from 0 to 1")
            points.append([_coordinate(point[0]), _coordinate(point[1])])
        strokes.append(points)
    if total < 2:
        raise _bad("draw your signature: at least two points")
    return strokes


def stroke_ops(strokes: Strokes, x: float, y: float, width: float, height: float) -> list[str]:
    """PDF operators drawing the strokes inside the rectangle (PDF points, origin bottom-left), centred."""
    scale_w, scale_h = width, width / CANVAS_ASPECT
    if scale_h > height:
        scale_w, scale_h = height * CANVAS_ASPECT, height
    left, bottom = x + (width - scale_w) / 2, y + (height - scale_h) / 2
    ops = ["q 0 g 0 G 1 J 1 j", f"{max(0.6, scale_h / 60):.2f} w"]
    for stroke in strokes:
        points = [(left + px * scale_w, bottom + (1 - py) * scale_h) for px, py in stroke]
        if len(points) == 1:  # a dot
            points.append((points[0][0] + 0.01, points[0][1]))
        ops.append(f"{points[0][0]:.2f} {points[0][1]:.2f} m")
        ops.extend(f"{px:.2f} {py:.2f} l" for px, py in points[1:])
        ops.append("S")
    ops.append("Q")
    return ops
