"""Per-frame prompt inputs beside the frames: channels.

A channel is one input the prompt shows for every frame: the synchronized telemetry today,
objects from a perception stage next. `sce.data.prompts.build_user_content` takes a list of
channels and lays each out as the window's layout asks (sce.data.clip.Layout):

- interleaved: every frame's time stamp line carries each channel's text for that frame
  (`t=1.3s: ax -9.7 ay +0.3 m/s², heading +0.4°, 12.1 m/s`);
- table: after the visuals, one block per channel (a header and one row per frame);
- a channel that has no data for this clip (telemetry dropped, or unusable) says so once
  (`Telemetry: unavailable.`), and its frames' lines carry the time stamp alone.

A new per-frame input is a new `Channel` subclass and one line in `clip_channels`: no prompt
function gains an argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sce.data.clip import ClipInputs
from sce.data.imu import FrameTelemetry

TELEMETRY_HEADER = "t (s) | ax (m/s²) | ay (m/s²) | heading change (deg) | speed (m/s)"
NO_TELEMETRY = "Telemetry: unavailable."


class Channel:
    """One per-frame input of a prompt. Subclasses render their frames' text; `available`
    False makes the channel say once that it is missing (`missing_text`)."""

    @property
    def available(self) -> bool:
        raise NotImplementedError

    def frame_text(self, k: int) -> str:
        """Frame k's text in the interleaved layouts (called only when available)."""
        raise NotImplementedError

    def table_text(self) -> str:
        """The channel's block in the table layout (called only when available)."""
        raise NotImplementedError

    def missing_text(self) -> str:
        """The line that stands for the channel when it has no data for this clip."""
        raise NotImplementedError


def telemetry_line(t: float, accel: Sequence[float], yaw: float, speed: float | None) -> str:
    """One frame's sensor text, with units: 'ax -9.7 ay +0.3 m/s², heading +0.4°, 12.1 m/s'."""
    speed_text = "" if speed is None or not math.isfinite(speed) else f", {speed:.1f} m/s"
    return (
        f"ax {accel[0]:+.1f} ay {accel[1]:+.1f} m/s², heading {math.degrees(yaw):+.1f}°{speed_text}"
    )


def telemetry_table(tele: FrameTelemetry) -> str:
    """The telemetry as a table: a header, then one row per frame."""
    rows = [TELEMETRY_HEADER]
    for k, t in enumerate(tele.frame_times):
        speed = "-" if tele.speed is None else f"{tele.speed[k]:.1f}"
        rows.append(
            f"{t:.1f} | {tele.accel[k, 0]:+.1f} | {tele.accel[k, 1]:+.1f} | "
            f"{math.degrees(tele.yaw_delta[k]):+.1f} | {speed}"
        )
    return "Telemetry:\n" + "\n".join(rows) + "\n"


@dataclass(frozen=True)
class TelemetryChannel(Channel):
    """The IMU/GPS telemetry synchronized to the frames (None: dropped or unusable)."""

    telemetry: FrameTelemetry | None

    @property
    def available(self) -> bool:
        return self.telemetry is not None

    def frame_text(self, k: int) -> str:
        tele = self.telemetry
        speed = None if tele.speed is None else float(tele.speed[k])
        return telemetry_line(tele.frame_times[k], tele.accel[k], float(tele.yaw_delta[k]), speed)

    def table_text(self) -> str:
        return telemetry_table(self.telemetry)

    def missing_text(self) -> str:
        return NO_TELEMETRY + "\n"


def time_label(t: float) -> str:
    """A frame's time stamp: 't=1.3s'."""
    return f"t={t:.1f}s"


def frame_lines(times: np.ndarray, channels: Sequence[Channel], index: slice) -> str:
    """The lines of frames `index`: each frame's time stamp, then the text of every available
    channel for that frame (`t=1.3s: ax ...`), one line per frame."""
    present = [c for c in channels if c.available]
    lines = []
    for k in range(index.start, index.stop):
        texts = "; ".join(c.frame_text(k) for c in present)
        lines.append(time_label(times[k]) + (f": {texts}" if texts else ""))
    return "\n".join(lines) + "\n"


def missing_notes(channels: Sequence[Channel]) -> list[str]:
    """The 'unavailable' line of each channel without data, in channel order."""
    return [c.missing_text() for c in channels if not c.available]


def table_blocks(channels: Sequence[Channel]) -> list[str]:
    """Each channel's table-layout block: its table, or its 'unavailable' line."""
    return [c.table_text() if c.available else c.missing_text() for c in channels]


def clip_channels(clip: ClipInputs, telemetry: bool = True) -> list[Channel]:
    """The channels of a loaded clip: its telemetry (dropped when `telemetry` is False, e.g.
    IMU dropout or a video-only evaluation)."""
    return [TelemetryChannel(clip.telemetry if telemetry else None)]
