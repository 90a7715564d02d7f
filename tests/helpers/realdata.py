"""The real recordings of ../shared/realdata (read in place, never copied into the repository).

`realdata_dir()` is `SCE_REALDATA` when set, else `<repository root>/../shared/realdata`; a test
that needs a file calls `require(...)`, which skips with the reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMA_SEGMENT = Path("comma2k19/Example_1/b0c9d2329ad1606b|2018-08-02--08-34-47/40")
GOPRO_SAMPLE = Path("gopro/max-heromode.mp4")


def realdata_dir() -> Path:
    """Where the shared real recordings are (see the module docstring)."""
    override = os.environ.get("SCE_REALDATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "realdata"


def require(relative: Path) -> Path:
    """The path of a shared recording, or skip the test saying where it was looked for."""
    path = realdata_dir() / relative
    if not path.exists():
        pytest.skip(
            f"real recording {relative} not found under {realdata_dir()} "
            "(../shared/realdata beside the repository, or set SCE_REALDATA)"
        )
    return path


def comma_segment_with_video(tmp: Path, width: int = 64, height: int = 48) -> Path:
    """A copy (in `tmp`, outside the repository) of the shared comma2k19 segment's arrays plus a
    stand-in raw `video.hevc` with one frame per `global_pose/frame_times` stamp (the real
    stream is too large to ship). Frame k's gray level is k mod 250, so tests can tell frames
    apart after decoding."""
    source = require(COMMA_SEGMENT)
    segment = tmp / "Example_1" / source.parent.name / source.name
    shutil.copytree(source, segment, ignore=shutil.ignore_patterns("*.png"))
    n = len(np.load(segment / "global_pose" / "frame_times"))
    write_raw_hevc(segment / "video.hevc", n, width, height)
    return segment


def write_raw_hevc(path: Path, frames: int, width: int, height: int, bframes: int = 0) -> Path:
    """A raw HEVC elementary stream (libx265, like comma2k19's video.hevc) of `frames` gray
    frames whose level is the frame index mod 250."""
    with av.open(str(path), "w", format="hevc") as container:
        stream = container.add_stream("libx265", rate=20)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "x265-params": f"log-level=error:bframes={bframes}:keyint=20",
        }
        for k in range(frames):
            image = np.full((height, width, 3), k % 250, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
