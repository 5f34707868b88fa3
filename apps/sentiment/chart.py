"""The timeline as a PNG: stacked label counts per bucket, the negative share, alert windows shaded.

The title holds a caller's text (the entity asked for): it is drawn literally (no mathtext, so
``$\\frac{`` is text, not a parse error). The drawing cost is bounded whatever the range asked
for: at most :data:`MAX_BARS` bars (adjacent buckets are summed into wider ones) and
:data:`MAX_SPANS` shaded alert windows.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["MAX_BARS", "MAX_SPANS", "timeline_png"]

MAX_BARS = 240  # a 9-inch chart at 100 dpi has ~800 px of plot: narrower bars are invisible anyway
MAX_SPANS = 100


@dataclass(frozen=True)
class _Bar:
    start: datetime
    negative: int
    neutral: int
    positive: int

    @property
    def negative_share(self) -> float:
        n = self.negative + self.neutral + self.positive
        return self.negative / n if n else 0.0


def _bars(buckets: list[Any], max_bars: int) -> tuple[list[_Bar], int]:
    """``buckets`` summed in runs of ``k`` so that at most ``max_bars`` remain, and ``k``."""
    k = max(1, math.ceil(len(buckets) / max_bars))
    bars = []
    for i in range(0, len(buckets), k):
        run = buckets[i : i + k]
        bars.append(_Bar(run[0].start, sum(b.negative for b in run), sum(b.neutral for b in run),
                         sum(b.positive for b in run)))  # fmt: skip
    return bars, k


def timeline_png(timeline: Any, title: str) -> bytes:
    """Render a ``TimelineOut`` with matplotlib's Agg backend (no display needed).

    Args:
        timeline: the buckets and alerts (``apps.sentiment.schemas.TimelineOut``).
        title: the chart's title, drawn as plain text (``$`` is not math).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax = fig.add_subplot()
    bars, k = _bars(list(timeline.buckets), MAX_BARS)
    xs: list[Any] = [b.start for b in bars]  # matplotlib converts datetimes (its stubs say floats)
    width = timeline.bucket_s * k / 86_400 * 0.9  # matplotlib dates are in days
    neg = [b.negative for b in bars]
    neu = [b.neutral for b in bars]
    pos = [b.positive for b in bars]
    ax.bar(xs, neg, width=width, color="#d62728", label="negative", align="edge")
    ax.bar(xs, neu, width=width, bottom=neg, color="#bbbbbb", label="neutral", align="edge")
    ax.bar(xs, pos, width=width, bottom=[a + b for a, b in zip(neg, neu, strict=True)], color="#2ca02c",
           label="positive", align="edge")  # fmt: skip
    ax.set_ylabel("texts per bucket" if k == 1 else f"texts per {k} buckets")
    share = ax.twinx()
    share.plot(xs, [b.negative_share for b in bars], color="black", linewidth=1, label="negative share")
    share.set_ylim(0, 1)
    share.set_ylabel("negative share")
    end = xs[-1] if xs else None
    alerts = list(timeline.alerts)
    for a in alerts[:MAX_SPANS]:
        ax.axvspan(a.started, a.resolved or end or a.fired, color="#ff7f0e", alpha=0.2)
    more = f", {len(alerts) - MAX_SPANS} not shaded" if len(alerts) > MAX_SPANS else ""
    ax.set_title(f"{title} — {len(alerts)} alert(s){more}", parse_math=False)
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
