"""A fixed decoded clip with telemetry, for dataset tests that must not decode video."""

from __future__ import annotations

import numpy as np

from sce.data.clip import ClipInputs, WindowSpec
from sce.data.imu import FrameTelemetry

# 3 fps over [-4 s, +2 s] of an event at 4.5 s: 18 frames, the first at 0.5 + 1/6 s
SPEC = WindowSpec(fps=3.0, before=4.0, after=2.0, width=112, height=56)


def stub_clip() -> ClipInputs:
    """18 black 2x2 frames at 3 fps with a constant braking IMU row and 10 m/s speed."""
    times = 0.5 + (np.arange(18) + 0.5) / 3.0
    tele = FrameTelemetry(
        times, np.tile([[-9.7, 0.3, 9.8]], (18, 1)), np.zeros(18), np.full(18, 10.0)
    )
    return ClipInputs(
        frames=np.zeros((18, 2, 2, 3), np.uint8),
        frame_times=times,
        telemetry=tele,
        event_time=4.5,
        event_time_source="manifest",
        imu_reason="",
        shifted=0.0,
        padded=0.0,
    )
