"""GoPro MP4 files with a GPMF telemetry track -> canonical records.

Layout: `root` is one .mp4 or a folder searched recursively for .mp4/.MP4 files. Every file
becomes one record whose `video` is the file itself (read in place) and whose IMU/GPS CSVs are
extracted from its GPMF track (`sce.prepare.sources.gpmf`) into `out_dir/<id>/`:

- IMU: ACCL (m/s^2) and GYRO (rad/s), both in the camera's axes (the stream's MTRX applied),
  stamped on the video's time base; GYRO is interpolated onto the ACCL stamps when its own
  differ. The camera's axes are not the vehicle's: the mounting is resolved by
  `sce.data.alignment` (metadata `imu_rotation`).
- GPS: the 2-D ground speed (m/s) of GPS5 (HERO5-10, MAX) or GPS9 (HERO11+); samples of a
  payload whose fix (GPSF, or GPS9's fix column) is below a 2-D fix are written as NaN.

Labels: GoPro files carry none; every record gets `label` (default "normal").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sce.data.alignment import record_alignment
from sce.data.imu import GpsSignal, ImuSignal
from sce.data.schema import ClipRecord
from sce.prepare.sources.base import (
    SourceContext,
    SourceError,
    SourceRecord,
    check_label,
    short_telemetry,
)
from sce.prepare.sources.gpmf import GpmfTelemetry, Sensor, read_gpmf
from sce.prepare.sources.telemetry_io import (
    increasing_samples,
    resample_onto,
    write_imu_csv,
    write_speed_csv,
)

# GoPro's GPMF documentation: ACCL/GYRO at 200 Hz, GPS5 at 18 Hz (HERO5 and later, MAX);
# GPS9 (HERO11+) at 10 Hz. `sce data validate` compares the measured rates with these.
NOMINAL_IMU_HZ = 200.0
NOMINAL_GPS_HZ = {"GPS5": 18.0, "GPS9": 10.0}
GPS_SPEED_COLUMN = 3  # GPS5 / GPS9: latitude, longitude, altitude, 2-D speed, 3-D speed, ...
GPS9_FIX_COLUMN = 8
MIN_FIX = 2  # 0 no lock, 2 a 2-D fix, 3 a 3-D fix


def find_videos(root: Path) -> list[Path]:
    """`root` itself when it is a file, else every .mp4 below it (sorted)."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise SourceError(f"{root}: no such file or folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() == ".mp4" and p.is_file())


def record_id(video: Path, root: Path) -> str:
    """`gopro_<path below root without suffix>`, characters unsafe in a file name as '_'."""
    relative = video.relative_to(root) if root.is_dir() else Path(video.name)
    return "gopro_" + re.sub(r"[^A-Za-z0-9._-]+", "_", relative.with_suffix("").as_posix())


def gps_speed(telemetry: GpmfTelemetry) -> tuple[np.ndarray, np.ndarray] | None:
    """(t, 2-D speed m/s) with NaN where the payload had no fix; None without a GPS stream."""
    key = next((k for k in ("GPS9", "GPS5") if k in telemetry.sensors), None)
    if key is None:
        return None
    gps = telemetry.sensors[key]
    speed = gps.values[:, GPS_SPEED_COLUMN].copy()
    if key == "GPS9":
        fix = gps.values[:, GPS9_FIX_COLUMN]
    elif "GPSF" in telemetry.sensors:  # one fix value per payload
        per_payload = dict(
            zip(
                telemetry.sensors["GPSF"].payload,
                telemetry.sensors["GPSF"].values[:, 0],
                strict=True,
            )
        )
        fix = np.array([per_payload.get(p, MIN_FIX) for p in gps.payload])
    else:
        fix = np.full(len(speed), MIN_FIX)
    speed[fix < MIN_FIX] = np.nan
    keep = increasing_samples(gps.t, f"{key} time stamps")
    return gps.t[keep], speed[keep]


def nominal_rates(sensors: dict[str, Sensor]) -> dict[str, float]:
    """The documented rates of the file's IMU and GPS streams (`metadata.nominal_rate_hz`)."""
    rates = {"imu": NOMINAL_IMU_HZ}
    gps = next((k for k in NOMINAL_GPS_HZ if k in sensors), None)
    if gps is not None:
        rates["gps"] = NOMINAL_GPS_HZ[gps]
    return rates


def imu_arrays(telemetry: GpmfTelemetry, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, accel [N, 3], gyro [N, 3]) on the ACCL stamps."""
    missing = [k for k in ("ACCL", "GYRO") if k not in telemetry.sensors]
    if missing:
        raise SourceError(f"{where}: GPMF track has no {' / '.join(missing)} stream")
    accel: Sensor = telemetry.sensors["ACCL"]
    gyro: Sensor = telemetry.sensors["GYRO"]
    keep = increasing_samples(accel.t, f"{where}: ACCL time stamps")
    t = accel.t[keep]
    if np.array_equal(gyro.t, accel.t):
        rates = gyro.values[keep, :3]
    else:
        rates = resample_onto(gyro.t, gyro.values[:, :3], t)
    return t, accel.values[keep, :3], rates


def gopro_records(
    ctx: SourceContext,
    *,
    out_dir: str | Path | None = None,
    label: str = "normal",
    imu_axes: str = "estimate",
) -> Iterator[SourceRecord]:
    """Convert GoPro MP4 files (see the module docstring).

    Args:
        out_dir: where each record's CSVs go (default: `gopro/` beside the manifest).
        label: the label of every record.
        imu_axes: the mounting: "estimate" (from gravity, GPS speed and the gyro; stored as
            `metadata.imu_rotation` when its forward axis is resolved, "estimate_always":
            stored whatever its quality; see `sce.data.alignment.record_alignment`), an
            explicit mapping of the camera's axes such as "z,x,y", or "none".

    `ctx.skip_missing` counts and skips files without a GPMF track (or without ACCL/GYRO)
    and files whose IMU stops short of the video (a file whose second half was never
    written: "short_telemetry") instead of failing; without it such a file is converted
    with a warning naming it.
    """
    root, report, label = ctx.root, ctx.report, check_label(label)
    out_dir = ctx.output_folder(out_dir, "gopro")
    videos = find_videos(root)
    if not videos:
        raise SourceError(f"{root}: no .mp4 file")
    for video in videos:
        rid = record_id(video, root)
        folder = out_dir / rid
        staging = ctx.stage(folder)
        try:
            telemetry = read_gpmf(video)
            t, accel, gyro = imu_arrays(telemetry, str(video))
        except SourceError as err:
            ctx.skip_unit(folder, "no_gpmf_imu", err)
            continue
        if short_telemetry(ctx, folder, t, telemetry.video_duration, str(video)):
            continue
        write_imu_csv(staging / "imu.csv", t, accel, gyro)
        gps = gps_speed(telemetry)
        if gps is not None:
            write_speed_csv(staging / "gps.csv", *gps)
        else:
            report.notes["no_gps"] += 1
        sensors = telemetry.sensors
        imu = ImuSignal(t, accel, gyro, str(folder / "imu.csv"))
        speed = None if gps is None else GpsSignal(*gps)
        metadata = {
            "video_fps": telemetry.video_fps,
            "measured_rate_hz": {
                k: sensors[k].rate for k in ("ACCL", "GYRO", "GPS5", "GPS9") if k in sensors
            },
            "nominal_rate_hz": nominal_rates(sensors),
            **record_alignment(imu, speed, imu_axes),
            "gpmf_orientation": {
                k: sensors[k].orientation for k in ("ACCL", "GYRO") if sensors[k].orientation
            },
        }
        record = ClipRecord(
            id=rid,
            video=str(video.absolute()),
            label=label,
            source="gopro",
            split="",
            imu=str(folder / "imu.csv"),
            gps=None if gps is None else str(folder / "gps.csv"),
            metadata=metadata,
        )
        yield SourceRecord(record, str(video))
