"""What chart endpoints return, and how they stay small (docs/charts.md).

Every chart on the portal is a `<div class="mc-chart" data-chart-url=…>` that
static/js/charts.js draws with uPlot from one JSON document:

    {"x": [...], "x_kind": "time" | "category",
     "series": [{"label": str, "unit": str, "values": [number | null, ...]}, ...]}

`x` is epoch seconds for "time" and text for "category"; every series has one value per x.
Optional keys: `"tz"` (the IANA zone in which a time axis is labelled, e.g. the site's) and,
per series, `"show": false` (drawn only when the reader switches it on in the legend).

No endpoint returns more than MAX_POINTS x values: `chart_json` refuses more, and time series
from raw samples pass through `downsample` first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from django.http import JsonResponse

#: The most x values any chart endpoint returns (a chart is ~1,000–2,000 px wide).
MAX_POINTS = 2000

XKind = Literal["time", "category"]


def chart_json(
    x: Sequence[Any],
    series: Iterable[dict[str, Any]],
    *,
    x_kind: XKind,
    tz: str | None = None,
    digits: int = 3,
) -> JsonResponse:
    """The chart document as a response; values are rounded to `digits` decimals.

    Raises ValueError when a series' length differs from `x` or there are more than
    MAX_POINTS x values (a programming error: downsample first).
    """
    if x_kind not in ("time", "category"):
        raise ValueError(f"x_kind must be 'time' or 'category', not {x_kind!r}")
    if len(x) > MAX_POINTS:
        raise ValueError(f"{len(x)} points; a chart takes at most {MAX_POINTS} (downsample)")
    out = []
    for one in series:
        values = [_rounded(v, digits) for v in one["values"]]
        if len(values) != len(x):
            raise ValueError(f"series {one['label']!r} has {len(values)} values for {len(x)} x")
        item = {"label": str(one["label"]), "unit": str(one.get("unit", "")), "values": values}
        if one.get("show") is False:
            item["show"] = False
        out.append(item)
    document: dict[str, Any] = {"x": list(x), "x_kind": x_kind, "series": out}
    if tz:
        document["tz"] = tz
    return JsonResponse(document)


def chart_error(message: str, errors: dict[str, list[str]] | None = None) -> JsonResponse:
    """400 with a sentence the page can show, and the refused fields when there are any."""
    body: dict[str, Any] = {"error": str(message)}
    if errors:
        body["errors"] = {name: [str(e) for e in msgs] for name, msgs in errors.items()}
    return JsonResponse(body, status=400)


def _rounded(value: Any, digits: int) -> float | None:
    if value is None:
        return None
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return None
    return round(number, digits)


Row = tuple  # (x, value of series 1, value of series 2, ...)


def downsample(
    points: Sequence[Row], max_points: int = MAX_POINTS, *, gap: float | None = None
) -> list[Row]:
    """At most `max_points` rows of a time series, keeping every series' extremes.

    `points` are rows `(x, v1, v2, …)` in ascending x (numbers, e.g. epoch seconds); values
    may be None. The x range is cut into `max_points // 2` equal time buckets; a bucket with
    more than two rows becomes two rows, at its first and its last x, and each series puts its
    minimum and its maximum there in the order they occurred (min/max decimation). Every
    series keeps one shared x axis, as uPlot needs, and a spike of a single sample survives.

    With `gap` (in x units), a step longer than `gap` gets a row of None in between, so the
    line breaks where the device sent nothing instead of bridging the hole. Those rows count
    against `max_points` too.
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    rows = list(points)
    if gap:
        # A row without any value says nothing the gap marker does not say better.
        rows = _with_gaps((r for r in rows if not _empty(r)), gap)
    if len(rows) <= max_points:
        return rows
    buckets = max_points // 2
    while buckets > 1:
        out = _decimate(rows, buckets, gap)
        if len(out) <= max_points:
            return out
        # Gaps split buckets; shrink the bucket count in proportion and try again.
        buckets = max(1, int(buckets * max_points / len(out)) - 1)
    # More holes than the chart has room for: draw the line through them.
    return _decimate([r for r in rows if not _empty(r)], max_points // 2, None)


def _empty(row: Row) -> bool:
    return all(v is None for v in row[1:])


def _with_gaps(points: Iterable[Row], gap: float) -> list[Row]:
    out: list[Row] = []
    previous = None
    for row in points:
        if previous is not None and row[0] - previous[0] > gap:
            out.append((previous[0] + (row[0] - previous[0]) / 2, *([None] * (len(row) - 1))))
        out.append(row)
        previous = row
    return out


def _decimate(rows: Sequence[Row], buckets: int, gap: float | None) -> list[Row]:
    x0, x1 = rows[0][0], rows[-1][0]
    width = (x1 - x0) / buckets or 1
    out: list[Row] = []
    current: list[Row] = []
    bucket = None
    for row in rows:
        if gap and _empty(row):
            _flush(current, out)  # a gap marker stays a row of its own
            current, bucket = [], None
            out.append(row)
            continue
        index = min(int((row[0] - x0) / width), buckets - 1)
        if index != bucket:
            _flush(current, out)
            current, bucket = [], index
        current.append(row)
    _flush(current, out)
    return out


def _flush(rows: list[Row], out: list[Row]) -> None:
    if len(rows) <= 2:
        out.extend(rows)
        return
    first: list[Any] = [rows[0][0]]
    last: list[Any] = [rows[-1][0]]
    for column in range(1, len(rows[0])):
        low = high = None
        low_at = high_at = 0
        for position, row in enumerate(rows):
            value = row[column]
            if value is None:
                continue
            if low is None or value < low:
                low, low_at = value, position
            if high is None or value > high:
                high, high_at = value, position
        if low_at <= high_at:
            first.append(low)
            last.append(high)
        else:
            first.append(high)
            last.append(low)
    out.append(tuple(first))
    out.append(tuple(last))
