"""IMU/GPS loading, event time and frame synchronisation (paper 000 Sec. III-A/B)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sce.data.imu import (
    GpsSignal,
    ImuError,
    ImuSignal,
    block_sample_times,
    event_time_from_imu,
    load_gps,
    load_imu,
    synchronize,
)
from sce.data.windows import Window, window_frame_times

FS = 100.0


def make_imu(n: int = 1000, ax=None, gz=None, t=None) -> ImuSignal:
    t = np.arange(n) / FS if t is None else t
    accel = np.zeros((len(t), 3))
    accel[:, 2] = 9.81
    if ax is not None:
        accel[:, 0] = ax
    gyro = np.zeros((len(t), 3))
    if gz is not None:
        gyro[:, 2] = gz
    return ImuSignal(t=t, accel=accel, gyro=gyro)


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def test_load_imu_values_and_nan(tmp_path: Path) -> None:
    p = write_csv(
        tmp_path / "imu.csv",
        "t,ax,ay,az,gx,gy,gz",
        ["0.00,1,2,9.8,0.1,0.2,0.3", "0.01,,2,9.8,0.1,0.2,0.3", "0.02,-3,2,9.8,0.1,0.2,nan"],
    )
    imu = load_imu(p)
    assert imu.t.tolist() == [0.0, 0.01, 0.02]
    assert imu.accel[0].tolist() == [1.0, 2.0, 9.8]
    assert np.isnan(imu.accel[1, 0]) and np.isnan(imu.gyro[2, 2])
    assert imu.fs == pytest.approx(100.0)


def test_load_imu_column_order_free_and_gps(tmp_path: Path) -> None:
    p = write_csv(
        tmp_path / "imu.csv", "gz,t,ax,ay,az,gx,gy,extra", ["5,0,1,2,3,4,4,x", "6,1,1,2,3,4,4,y"]
    )
    assert load_imu(p).gyro[:, 2].tolist() == [5.0, 6.0]
    g = load_gps(write_csv(tmp_path / "gps.csv", "t,speed", ["0,10", "1,12.5"]))
    assert g.speed.tolist() == [10.0, 12.5]


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        ("t,ax,ay,az,gx,gy", ["0,1,1,1,1,1"], r"lacks column\(s\) \['gz'\]"),
        ("t,ax,ay,az,gx,gy,gz", ["0,1,1,1,1,1,1", "0.01,1,abc,1,1,1,1"], r"line 3, column 'ay'"),
        (
            "t,ax,ay,az,gx,gy,gz",
            ["0,1,1,1,1,1,1", "0,1,1,1,1,1,1"],
            r"line 3, column 't'.*increasing",
        ),
        ("t,ax,ay,az,gx,gy,gz", ["0,1,1,1,1,1,1"], r"at least 2 samples"),
        ("t,ax,ay,az,gx,gy,gz", ["0,1,1,1,1,1,1", ",1,1,1,1,1,1"], r"line 3, column 't'"),
    ],
)
def test_load_imu_errors_name_file_and_field(tmp_path: Path, header, rows, match) -> None:
    p = write_csv(tmp_path / "bad_imu.csv", header, rows)
    with pytest.raises(ImuError, match=match) as err:
        load_imu(p)
    assert "bad_imu.csv" in str(err.value)


def test_load_missing_file_and_negative_speed(tmp_path: Path) -> None:
    with pytest.raises(ImuError, match="nope.csv: telemetry file not found"):
        load_imu(tmp_path / "nope.csv")
    p = write_csv(tmp_path / "gps.csv", "t,speed", ["0,1", "1,-2"])
    with pytest.raises(ImuError, match=r"line 3, column 'speed'"):
        load_gps(p)


def test_event_time_is_argmax_abs_ax() -> None:
    ax = np.zeros(1000)
    ax[300] = 5.0
    ax[712] = -11.3  # harsh braking: largest magnitude
    ax[500] = np.nan
    assert event_time_from_imu(make_imu(ax=ax)) == pytest.approx(7.12)
    with pytest.raises(ImuError, match="'ax'"):
        event_time_from_imu(make_imu(ax=np.full(1000, np.nan)))


# --------------------------------------------------------------------------------------------
# synchronisation
# --------------------------------------------------------------------------------------------


def test_block_sample_times_centered_and_causal() -> None:
    c = block_sample_times(np.array([0.5]), FS, 33, "centered")
    e = block_sample_times(np.array([0.5]), FS, 33, "causal")
    np.testing.assert_allclose(c[0, [0, 16, 32]], [0.34, 0.50, 0.66])
    np.testing.assert_allclose(e[0, [0, 32]], [0.18, 0.50])


def test_sync_block_average_step_signal_hand_computed() -> None:
    # ax = 10 from sample 50 (t = 0.5 s) on. fs=100, fps=3 -> W = floor(33.3) = 33.
    ax = np.where(np.arange(1000) >= 50, 10.0, 0.0)
    imu = make_imu(ax=ax)
    c = synchronize(imu, None, np.array([0.5, 2.0]), fps=3.0)
    assert c.window_samples == 33 and c.available and c.speed is None
    # centred block = samples 34..66: 17 of them (50..66) are 10 -> 170 / 33
    np.testing.assert_allclose(c.accel[:, 0], [170 / 33, 10.0])
    np.testing.assert_allclose(c.accel[:, 2], [9.81, 9.81])
    e = synchronize(imu, None, np.array([0.5, 2.0]), fps=3.0, anchor="causal")
    # block ending at 0.5 s = samples 18..50: only sample 50 is 10 -> 10 / 33
    np.testing.assert_allclose(e.accel[:, 0], [10 / 33, 10.0])


def test_sync_integrated_yaw_and_speed_on_event_window() -> None:
    imu = make_imu(n=1600, gz=0.3)  # constant 0.3 rad/s for 16 s
    gps = GpsSignal(t=np.arange(17.0), speed=np.arange(17.0) * 2.0)  # 0, 2, 4, ... m/s
    times = window_frame_times(Window(2.0, 8.0), 3.0)
    tel = synchronize(imu, gps, times, fps=3.0)
    assert len(times) == 18 and tel.available and tel.reason == ""
    # 33 samples of 0.3 rad/s at 100 Hz: 33 * 0.3 / 100 = 0.099 rad per frame
    np.testing.assert_allclose(tel.yaw_delta, np.full(18, 0.099))
    # speed = 2 * t at the frame times 2 + 1/6, 2 + 1/2, ...
    np.testing.assert_allclose(tel.speed[:3], [2 * (2 + 1 / 6), 2 * 2.5, 2 * (2 + 5 / 6)])


def test_sync_irregular_timestamps_resampled() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(1000) / FS + rng.uniform(-0.003, 0.003, 1000)
    t = np.delete(t, np.arange(5, 1000, 7))  # also drop every 7th sample
    imu = make_imu(t=t, ax=2.0 * t, gz=np.full(len(t), 0.3))
    tel = synchronize(imu, None, np.array([1.0, 3.0, 5.0]), fps=3.0, fs=100.0)
    # linear signal: the block mean of the interpolated samples is the value at the centre
    np.testing.assert_allclose(tel.accel[:, 0], [2.0, 6.0, 10.0], atol=1e-9)
    np.testing.assert_allclose(tel.yaw_delta, 0.099, atol=1e-12)
    est = synchronize(imu, None, np.array([1.0]), fps=3.0)  # fs from 1 / median(dt)
    assert est.window_samples == 33 and abs(est.fs - 100.0) < 1.0


def test_sync_short_nan_gap_is_interpolated() -> None:
    t = np.arange(1000) / FS
    ax = 3.0 * t
    ax[95:105] = np.nan  # hole 0.94 -> 1.05 s = 0.11 s <= 0.25 s
    tel = synchronize(make_imu(ax=ax), None, np.array([1.0]), fps=3.0)
    assert tel.available
    np.testing.assert_allclose(tel.accel[0, 0], 3.0, atol=1e-9)


def test_sync_long_nan_gap_and_short_signal_unavailable() -> None:
    gz = np.full(1000, 0.3)
    gz[90:130] = np.nan  # 0.41 s hole
    tel = synchronize(make_imu(gz=gz), None, np.array([1.0, 2.0]), fps=3.0)
    assert not tel.available and tel.accel is None and tel.yaw_delta is None
    assert "'gz'" in tel.reason and "gap" in tel.reason
    # IMU ends at 9.99 s; a frame at 9.9 s needs samples up to 10.06 s (0.07 s short: held)
    assert synchronize(make_imu(), None, np.array([9.9]), fps=3.0).available
    late = synchronize(make_imu(), None, np.array([12.0]), fps=3.0)
    assert not late.available and "ends at 9.990 s" in late.reason


def test_sync_gps_gap_drops_speed_only() -> None:
    gps = GpsSignal(t=np.array([0.0, 1.0, 5.0, 6.0]), speed=np.array([1.0, 1.0, 1.0, 1.0]))
    tel = synchronize(make_imu(), gps, np.array([2.0, 3.0]), fps=3.0)
    assert tel.available and tel.speed is None and "speed" in tel.reason
    assert synchronize(None, None, np.array([1.0]), fps=3.0).reason == "no IMU"


def test_sync_span_bounds_every_sample_read() -> None:
    # a chunk [2, 4] s of a longer recording: everything outside it is 100
    t = np.arange(1000) / FS
    inside = (t >= 2.0) & (t <= 4.0)
    gps_t = np.arange(11.0)
    gps = GpsSignal(t=gps_t, speed=np.where((gps_t >= 2) & (gps_t <= 4), 5.0, 100.0))
    imu = make_imu(ax=np.where(inside, 1.0, 100.0), gz=np.where(inside, 0.3, 100.0))
    frames = np.array([2.0, 2.5, 3.5, 4.0])  # blocks of the edge frames reach 0.16 s outside
    tel = synchronize(imu, gps, frames, fps=3.0, span=(2.0, 4.0))
    np.testing.assert_allclose(tel.accel[:, 0], 1.0)
    np.testing.assert_allclose(tel.yaw_delta, 33 * 0.3 / FS)  # edge samples repeat: still W
    np.testing.assert_allclose(tel.speed, 5.0)
    unbounded = synchronize(imu, gps, frames, fps=3.0)
    assert unbounded.accel[0, 0] > 40 and unbounded.speed[1] == pytest.approx(5.0)


def test_sync_causal_reads_nothing_after_the_last_frame() -> None:
    t = np.arange(1000) / FS
    gps_t = np.arange(11.0)
    gps = GpsSignal(t=gps_t, speed=np.where(gps_t <= 3.5, 2.0 * gps_t, 100.0))
    imu = make_imu(ax=np.where(t <= 3.5, 1.0, 100.0))
    tel = synchronize(imu, gps, np.array([2.0, 3.5]), fps=3.0, anchor="causal")
    np.testing.assert_allclose(tel.accel[:, 0], 1.0)  # the block ending at 3.5 s
    np.testing.assert_allclose(tel.speed, [4.0, 6.0])  # 3.5 s: held from the 3 s fix
    centred = synchronize(imu, gps, np.array([2.0, 3.5]), fps=3.0)
    assert centred.accel[1, 0] > 40 and centred.speed[1] > 50  # reads the future
