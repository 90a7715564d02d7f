"""TensorBoard event files read back: the custom-scalars layout and what its charts draw."""

from __future__ import annotations

import re
from pathlib import Path


def dashboard_layout(logdir: str | Path) -> dict[str, dict[str, list[str]]]:
    """The CUSTOM SCALARS layout of an event folder: category -> chart title -> tag regexes."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    events.Reload()
    layouts = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layouts[-1].tensor_proto.string_val[0])
    return {
        c.title: {chart.title: list(chart.multiline.tag) for chart in c.chart}
        for c in layout.category
    }


def charted(regexes: list[str], tags: list[str]) -> set[str]:
    """The tags a chart draws (TensorBoard searches each regex in the tag)."""
    return {t for t in tags if any(re.search(r, t) for r in regexes)}
