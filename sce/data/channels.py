"""Per-frame prompt inputs beside the frames: channels.

A channel is one input the prompt shows for every frame: the synchronized telemetry today,
objects from a perception stage next. `sce.data.prompts.build_user_content` takes a list of
channels and lays each out as the window's layout asks (sce.data.clip.Layout):

- interleaved: every frame's time stamp line carries each channel's text for that frame
  (`t=1.3s: ax -9.7 ay +0.3 az +9.8 m/s², heading +0.4°, 12.1 m/s`);
- table: after the visuals, one block per channel (a header and one row per frame);
- a channel that has no data for this clip (telemetry dropped, or unusable) says so once
  (`Telemetry: unavailable.`), and its frames' lines carry the time stamp alone.

Which channels a model gets is a setting, `data.window.channels` (sce.data.clip.WindowSpec):
["telemetry"] for paper 000, [] for the video-only recipes (papers 001, 002, 003). A channel
left out of the setting is absent from the prompt altogether (no "unavailable" line, and the
system prompt does not mention it); a configured channel without data for a clip (IMU dropout,
no usable IMU) says it is unavailable.

A new per-frame input is a new `Channel` subclass with a `name` (added to
`sce.data.clip.ChannelName`) and one entry in `CHANNEL_TYPES`: no prompt function gains an
argument.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sce.data.clip import CHANNEL_NAMES, ClipInputs
from sce.data.imu import FrameTelemetry

TELEMETRY_HEADER = "t (s) | ax (m/s²) | ay (m/s²) | az (m/s²) | heading change (deg) | speed (m/s)"
NO_TELEMETRY = "Telemetry: unavailable."


class Channel:
    """One per-frame input of a prompt. Subclasses render their frames' text; `available`
    False makes the channel say once that it is missing (`missing_text`).

    Class attributes: `name`, the channel's name in data.window.channels; `instruction`, the
    system prompt's clause about it ("read the vehicle telemetry when it is given")."""

    name: ClassVar[str] = ""
    instruction: ClassVar[str] = ""

    @classmethod
    def of_clip(cls, clip: ClipInputs, dropped: bool = False) -> Channel:
        """The channel of a loaded clip; `dropped` gives it no data (e.g. IMU dropout)."""
        raise NotImplementedError

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
    """One frame's sensor text, with units: 'ax -9.7 ay +0.3 az +9.8 m/s², heading +0.4°,
    12.1 m/s'. The acceleration is triaxial, as paper 000's a_sync = (a_x, a_y, a_z)."""
    speed_text = "" if speed is None or not math.isfinite(speed) else f", {speed:.1f} m/s"
    ax, ay, az = accel[:3]
    heading = math.degrees(yaw)
    return f"ax {ax:+.1f} ay {ay:+.1f} az {az:+.1f} m/s², heading {heading:+.1f}°{speed_text}"


def telemetry_table(tele: FrameTelemetry) -> str:
    """The telemetry as a table: a header, then one row per frame."""
    rows = [TELEMETRY_HEADER]
    for k, t in enumerate(tele.frame_times):
        speed = "-" if tele.speed is None else f"{tele.speed[k]:.1f}"
        ax, ay, az = tele.accel[k, :3]
        rows.append(
            f"{t:.1f} | {ax:+.1f} | {ay:+.1f} | {az:+.1f} | "
            f"{math.degrees(tele.yaw_delta[k]):+.1f} | {speed}"
        )
    return "Telemetry:\n" + "\n".join(rows) + "\n"


@dataclass(frozen=True)
class TelemetryChannel(Channel):
    """The IMU/GPS telemetry synchronized to the frames (None: dropped or unusable)."""

    name: ClassVar[str] = "telemetry"
    instruction: ClassVar[str] = "read the vehicle telemetry when it is given"
    telemetry: FrameTelemetry | None

    @classmethod
    def of_clip(cls, clip: ClipInputs, dropped: bool = False) -> TelemetryChannel:
        return cls(None if dropped else clip.telemetry)

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


# name -> channel class, one entry per name of data.window.channels
CHANNEL_TYPES: dict[str, type[Channel]] = {TelemetryChannel.name: TelemetryChannel}
assert tuple(CHANNEL_TYPES) == CHANNEL_NAMES  # every configurable channel renders


def clip_channels(
    clip: ClipInputs, names: Sequence[str], dropped: Collection[str] = ()
) -> list[Channel]:
    """The channels `names` (data.window.channels, in order) of a loaded clip; those in
    `dropped` have no data for this sample (IMU dropout, a video-only evaluation setting)."""
    return [CHANNEL_TYPES[name].of_clip(clip, name in dropped) for name in names]


def channel_instructions(names: Sequence[str]) -> list[str]:
    """The system prompt's clause of each channel `names`, in order."""
    return [CHANNEL_TYPES[name].instruction for name in names]
