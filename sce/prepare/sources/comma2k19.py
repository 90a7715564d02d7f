"""comma2k19 (comma.ai, MIT) segments -> canonical records on the video's time base.

Layout (the dataset's own; any depth under root)::

    <route>/<segment>/video.hevc                           raw HEVC elementary stream, 20 fps
    <route>/<segment>/global_pose/frame_times              boot-clock time of every frame
    <route>/<segment>/processed_log/IMU/accelerometer/{t,value}   ~104 Hz, m/s^2, device frame
    <route>/<segment>/processed_log/IMU/gyro/{t,value}            same clock, rad/s
    <route>/<segment>/processed_log/GNSS/live_gnss_ublox/{t,value} ~10 Hz; value[:, 2] = speed m/s
    <route>/<segment>/processed_log/CAN/speed/{t,value}           ~83 Hz vehicle speed, m/s

(the arrays are numpy files without an extension). Every time stamp is on the device's boot
clock (the first frame of a segment sits at tens of thousands of seconds). Each segment becomes
one record under `out_dir/<id>/`: `video.mp4`, `imu.csv` and `gps.csv` with t = boot time -
frame_times[0] (zero = the first frame), and `can_speed.csv` (CAN speed, same time base, kept as
a ground truth of longitudinal motion: `metadata["can_speed"]`, relative to the manifest).

The video: decord cannot open a raw `.hevc` stream (no container, no time stamps: "broken
metadata"), and reading it through PyAV on every sample would decode from the stream's start for
every window (a raw stream has no index to seek by). So the stream is *remuxed* once into an mp4
(packets copied, not re-encoded: no quality loss, a 60 s segment takes well under a second) with
each frame's presentation time set from `global_pose/frame_times`. The result is an ordinary
indexed mp4 that both decoders of `sce.data.video` read and seek, at the segment's real frame
times. Remuxing assigns the times in stream order, which is display order only for a stream
without reordered (B) frames; a stream with them is refused with an error naming the file.

Labels: comma2k19 is ordinary driving; every record is `label` (default "normal") unless told
otherwise. Records of one route share a split (`group_of`).
"""

from __future__ import annotations

import fractions
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sce.data.alignment import record_alignment
from sce.data.imu import GpsSignal, ImuSignal
from sce.data.schema import ClipRecord
from sce.prepare.sources.base import (
    SourceContext,
    SourceError,
    SourceRecord,
    check_label,
    missing_file,
    relative_to,
    short_telemetry,
)
from sce.prepare.sources.telemetry_io import (
    increasing_samples,
    measured_rate,
    resample_onto,
    write_imu_csv,
    write_speed_csv,
)

FRAME_TIMES = Path("global_pose") / "frame_times"
ACCEL = Path("processed_log") / "IMU" / "accelerometer"
GYRO = Path("processed_log") / "IMU" / "gyro"
GNSS = Path("processed_log") / "GNSS" / "live_gnss_ublox"
CAN_SPEED = Path("processed_log") / "CAN" / "speed"
GNSS_SPEED_COLUMN = 2  # latitude, longitude, speed (m/s), utc_timestamp, altitude, bearing
MP4_TIME_BASE = fractions.Fraction(1, 90000)


def find_segments(root: Path) -> list[Path]:
    """Segment folders under `root` (those with `global_pose/frame_times`), sorted."""
    if (root / FRAME_TIMES).is_file():
        return [root]
    return sorted(
        p.parent.parent for p in root.rglob("frame_times") if p.parent.name == "global_pose"
    )


def segment_id(segment: Path) -> tuple[str, str]:
    """(record id, route) of a segment folder `<route>/<segment>`; the route's '|' and any
    character unsafe in a file name become '_'."""
    route = re.sub(r"[^A-Za-z0-9._-]+", "_", segment.parent.name)
    return f"comma2k19_{route}_{segment.name}", route


def load_series(folder: Path, columns: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(t [N], value [N, C]) of one processed_log series; SourceError names the file and field."""
    arrays = {}
    for name in ("t", "value"):
        path = folder / name
        if not path.is_file():
            raise SourceError(f"{path}: file not found (field '{name}' of {folder.name})")
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise SourceError(f"{path}: not a numpy array file: {err}") from err
    t, value = arrays["t"].astype(np.float64), arrays["value"].astype(np.float64)
    value = value.reshape(len(value), -1)
    if len(value) != len(t):
        raise SourceError(f"{folder}/value: {len(value)} rows but t has {len(t)} stamps")
    if columns is not None and value.shape[1] < columns:
        raise SourceError(f"{folder}/value: {value.shape[1]} columns, expected {columns}")
    keep = increasing_samples(t, f"{folder}/t")
    return t[keep], value[keep]


def load_frame_times(segment: Path) -> np.ndarray:
    """Boot-clock times of the segment's frames (strictly increasing, checked); SourceError
    naming the file when it is missing or not a whole numpy array (a truncated copy)."""
    path = segment / FRAME_TIMES
    try:
        times = np.load(path, allow_pickle=False).astype(np.float64).ravel()
    except (OSError, ValueError, EOFError) as err:
        raise SourceError(f"{path}: not a numpy array file: {err}") from err
    if times.size < 2 or not (np.diff(times) > 0).all():
        raise SourceError(f"{path}: frame times must be >= 2 strictly increasing stamps")
    return times


def remux_hevc(source: Path, target: Path, frame_times: np.ndarray) -> Path:
    """Copy the raw HEVC stream `source` into an mp4 whose frame k is shown at frame_times[k]
    (seconds, the first one 0); raises SourceError naming the file when the packet count differs
    from the frame count or the stream reorders frames (see the module docstring)."""
    import av

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.mp4")
    pts = np.round(frame_times / float(MP4_TIME_BASE)).astype(np.int64)
    durations = np.diff(pts, append=pts[-1] + int(np.median(np.diff(pts))))
    try:
        with av.open(str(source), format="hevc") as src, av.open(str(tmp), "w") as dst:
            stream = src.streams.video[0]
            if stream.codec_context.has_b_frames:
                raise SourceError(
                    f"{source}: the HEVC stream reorders frames (B-frames): its frame times "
                    "cannot be assigned in stream order"
                )
            out = dst.add_stream_from_template(stream)
            out.time_base = MP4_TIME_BASE
            n = 0
            for packet in src.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if n < len(pts):
                    packet.pts = packet.dts = int(pts[n])
                    packet.duration = int(durations[n])
                    packet.time_base = MP4_TIME_BASE
                    packet.stream = out
                    dst.mux(packet)
                n += 1
    except av.error.FFmpegError as err:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{source}: cannot read the HEVC stream: {err}") from err
    except SourceError:
        tmp.unlink(missing_ok=True)
        raise
    if n != len(pts):
        tmp.unlink(missing_ok=True)
        raise SourceError(
            f"{source}: {n} video frames but global_pose/frame_times has {len(pts)} stamps"
        )
    tmp.replace(target)
    return target


def convert_segment(
    segment: Path, folder: Path, zero: float, imu_axes: str
) -> tuple[dict[str, Any], np.ndarray]:
    """Write the segment's IMU, GPS and CAN speed CSVs into `folder` on the video time base
    (boot time - `zero`); returns metadata (measured rates (Hz) and the mounting rotation,
    `imu_axes`, see `sce.data.alignment.record_alignment`) and the IMU's stamps."""
    t_acc, accel = load_series(segment / ACCEL, 3)
    t_gyr, gyro = load_series(segment / GYRO, 3)
    if not np.array_equal(t_acc, t_gyr):  # separate sensor events: gyro onto the accel stamps
        gyro = resample_onto(t_gyr, gyro[:, :3], t_acc)
    write_imu_csv(folder / "imu.csv", t_acc - zero, accel[:, :3], gyro[:, :3])
    t_gps, gnss = load_series(segment / GNSS, GNSS_SPEED_COLUMN + 1)
    write_speed_csv(folder / "gps.csv", t_gps - zero, gnss[:, GNSS_SPEED_COLUMN])
    rates = {"imu": measured_rate(t_acc), "gps": measured_rate(t_gps)}
    if (segment / CAN_SPEED / "t").is_file():
        t_can, can = load_series(segment / CAN_SPEED, 1)
        write_speed_csv(folder / "can_speed.csv", t_can - zero, can[:, 0])
        rates["can_speed"] = measured_rate(t_can)
    imu = ImuSignal(t_acc - zero, accel[:, :3], gyro[:, :3], str(folder / "imu.csv"))
    gps = GpsSignal(t_gps - zero, gnss[:, GNSS_SPEED_COLUMN], str(folder / "gps.csv"))
    return {"measured_rate_hz": rates, **record_alignment(imu, gps, imu_axes)}, imu.t


def comma2k19_records(
    ctx: SourceContext,
    *,
    out_dir: str | Path | None = None,
    label: str = "normal",
    video_name: str = "video.hevc",
    imu_axes: str = "estimate",
) -> Iterator[SourceRecord]:
    """Convert every comma2k19 segment under `root` (see the module docstring).

    Args:
        out_dir: where each record's mp4 and CSVs go (default: `comma2k19/` beside the manifest).
        label: the label of every record ("normal": ordinary driving).
        video_name: the raw stream's file name in each segment folder.
        imu_axes: the mounting: "estimate" (from gravity, GPS speed and the gyro; stored as
            `metadata.imu_rotation` when its forward axis is resolved, "estimate_always":
            stored whatever its quality; see `sce.data.alignment.record_alignment`),
            "comma_eon" / an explicit mapping such as "x,-y,-z", or "none" (device axes as
            they are).

    `ctx.skip_missing` counts and skips segments without their video ("missing_video"),
    with a missing or unreadable file ("bad_segment") or an IMU short of the video
    ("short_telemetry") instead of failing; each segment's files are staged
    (`SourceContext.stage`), so a failure or a skip leaves none behind.
    """
    root, report, label = ctx.root, ctx.report, check_label(label)
    out_dir = ctx.output_folder(out_dir, "comma2k19")
    segments = find_segments(root)
    if not segments:
        raise SourceError(f"{root}: no comma2k19 segment (no global_pose/frame_times below it)")
    for segment in segments:
        video = segment / video_name
        if missing_file(video, f"segment {segment}", report, ctx.skip_missing):
            continue
        record_id, route = segment_id(segment)
        folder = out_dir / record_id
        staging = ctx.stage(folder)
        try:
            frame_times = load_frame_times(segment)
            zero = float(frame_times[0])
            remux_hevc(video, staging / "video.mp4", frame_times - zero)
            telemetry, imu_t = convert_segment(segment, staging, zero, imu_axes)
        except SourceError as err:
            ctx.skip_unit(folder, "bad_segment", err)
            continue
        duration = float(frame_times[-1] - zero) + 1.0 / measured_rate(frame_times)
        if short_telemetry(ctx, folder, imu_t, duration, f"segment {segment}"):
            continue
        metadata: dict[str, Any] = {
            "route": segment.parent.name,
            "segment": segment.name,
            "device_clock_zero_s": zero,  # boot-clock time of the first frame
            "frame_rate_hz": measured_rate(frame_times),
            **telemetry,
            # u-blox configured at 10 Hz; the IMU's nominal is left to the validator's default
            # (paper 000's 100 Hz): comma's sensor loop is nominally 100 Hz, it measures 104.3.
            "nominal_rate_hz": {"gps": 10.0},
        }
        if (staging / "can_speed.csv").is_file():
            metadata["can_speed"] = relative_to(folder / "can_speed.csv", ctx.out_manifest.parent)
        record = ClipRecord(
            id=record_id,
            video=str(folder / "video.mp4"),
            label=label,
            source="comma2k19",
            split="",
            imu=str(folder / "imu.csv"),
            gps=str(folder / "gps.csv"),
            metadata=metadata,
        )
        yield SourceRecord(record, f"segment {segment}", group=route)
