"""The timeline as a PNG: stacked label counts per bucket, the negative share, alert windows shaded."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["timeline_png"]


def timeline_png(timeline: Any, title: str) -> bytes:
    """Render a ``TimelineOut`` with matplotlib's Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax = fig.add_subplot()
    xs = [b.start for b in timeline.buckets]
    width = timeline.bucket_s / 86_400 * 0.9  # matplotlib dates are in days
    neg = [b.negative for b in timeline.buckets]
    neu = [b.neutral for b in timeline.buckets]
    pos = [b.positive for b in timeline.buckets]
    ax.bar(xs, neg, width=width, color="#d62728", label="negative", align="edge")
    ax.bar(xs, neu, width=width, bottom=neg, color="#bbbbbb", label="neutral", align="edge")
    ax.bar(xs, pos, width=width, bottom=[a + b for a, b in zip(neg, neu, strict=True)], color="#2ca02c",
           label="positive", align="edge")  # fmt: skip
    ax.set_ylabel("texts per bucket")
    share = ax.twinx()
    share.plot(xs, [b.negative_share for b in timeline.buckets], color="black", linewidth=1, label="negative share")
    share.set_ylim(0, 1)
    share.set_ylabel("negative share")
    end = xs[-1] if xs else None
    for a in timeline.alerts:
        ax.axvspan(a.started, a.resolved or end or a.fired, color="#ff7f0e", alpha=0.2)
    ax.set_title(f"{title} — {len(timeline.alerts)} alert(s)")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
