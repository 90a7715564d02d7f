"""GoPro GPMF telemetry -> canonical records (issue 16 point 2): the KLV reader on hand-made
buffers, and the converter on GoPro's own sample file (../shared/realdata/gopro)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from helpers.realdata import GOPRO_SAMPLE, require

from sce.data import imu as imu_lib
from sce.data import video as video_lib
from sce.data.schema import load_manifest
from sce.prepare.sources import SourceError, prepare
from sce.prepare.sources.gpmf import parse_klv, read_gpmf, read_payload


def klv(key: str, kind: str, size: int, repeat: int, data: bytes) -> bytes:
    """One KLV item, padded to 4 bytes."""
    body = struct.pack(">4scBH", key.encode(), kind.encode("latin-1"), size, repeat) + data
    return body + b"\0" * (-len(body) % 4)


def nested(key: str, *children: bytes) -> bytes:
    data = b"".join(children)
    return klv(key, "\0", 1, len(data), data)


def test_klv_nesting_padding_and_scaling() -> None:
    """DEVC > STRM with STNM text (padded), a per-column SCAL, an MTRX and int16 samples."""
    samples = np.array([[100, -200, 300], [400, 500, -600]], dtype=">i2")
    strm = nested(
        "STRM",
        klv("STNM", "c", 1, 5, b"Accel"),  # 5 bytes + 3 padding
        klv("SCAL", "s", 2, 3, np.array([10, 100, 1000], ">i2").tobytes()),
        klv("MTRX", "f", 4, 9, np.array([0, 1, 0, 1, 0, 0, 0, 0, -1], ">f4").tobytes()),
        klv("ACCL", "s", 6, 2, samples.tobytes()),
    )
    buffer = nested("DEVC", klv("DVNM", "c", 1, 4, b"Test"), strm)
    (device,) = parse_klv(buffer)
    assert device.key == "DEVC" and [c.key for c in device.children] == ["DVNM", "STRM"]
    assert [c.key for c in device.children[1].children] == ["STNM", "SCAL", "MTRX", "ACCL"]
    streams = {}
    read_payload(buffer, 0, streams, "test")
    (chunk,) = streams["ACCL"].chunks
    scaled = samples / np.array([10.0, 100.0, 1000.0])  # [[10, -2, 0.3], [40, 5, -0.6]]
    np.testing.assert_allclose(chunk, scaled[:, [1, 0, 2]] * [1, 1, -1])
    assert streams["ACCL"].name == "Accel"


def test_fixed_point_and_truncated_item() -> None:
    (item,) = parse_klv(klv("TMPC", "q", 4, 1, struct.pack(">i", 3 * 65536 + 32768)))
    streams = {}
    read_payload(nested("DEVC", nested("STRM", klv("TMPC", "q", 4, 1, item.data),
                                       klv("TEST", "q", 4, 1, item.data))), 0, streams, "t")  # fmt: skip
    assert streams["TEST"].chunks[0][0, 0] == 3.5
    broken = klv("ACCL", "s", 6, 2, b"\0" * 12)[:10]
    with pytest.raises(SourceError, match=r"'ACCL' at byte 0 claims 12 bytes, only 2 left"):
        parse_klv(broken, "clip.mp4")


@pytest.fixture(scope="module")
def sample() -> Path:
    return require(GOPRO_SAMPLE)


def test_gpmf_of_the_gopro_sample(sample: Path) -> None:
    """Counts, rates, units and timing of the real MAX sample (10.5 s, 29.97 fps)."""
    telemetry = read_gpmf(sample)
    info = video_lib.video_info(sample)
    assert (info.n_frames, round(info.fps, 2)) == (315, 29.97)
    assert telemetry.video_duration == pytest.approx(315 / (30000 / 1001))
    accel, gyro, gps = (telemetry.sensors[k] for k in ("ACCL", "GYRO", "GPS5"))
    assert (len(accel.t), len(gyro.t), len(gps.t)) == (2082, 2082, 191)
    assert accel.rate == pytest.approx(197.47, abs=0.01)  # "about 200 Hz"
    assert gps.rate == pytest.approx(18.18, abs=0.01)
    # m/s^2: gravity is the clip's mean acceleration (a walk: the steps average out)
    assert np.linalg.norm(accel.values.mean(axis=0)) == pytest.approx(9.79, abs=0.01)
    assert np.linalg.norm(accel.values, axis=1).mean() == pytest.approx(9.83, abs=0.01)
    assert np.abs(gyro.values).max() < 10  # rad/s (deg/s would reach hundreds)
    assert (accel.units, gyro.units) == ("m/s²", "rad/s")
    # Stamps on the video's time base: the first ACCL sample within one sample of frame 0,
    # and the telemetry's span equal to the video's within one video frame (the GPMF track
    # ends 33 ms after the last frame, one frame period).
    period = 1.0 / accel.rate
    assert abs(accel.t[0]) <= period
    span = accel.t[-1] + period - accel.t[0]
    assert span == pytest.approx(telemetry.video_duration, abs=1.0 / info.fps)
    assert telemetry.payload_times[-1, 1] - telemetry.video_duration == pytest.approx(
        0.0325, abs=1e-3
    )
    # GPS5 columns: latitude, longitude (San Diego), altitude, 2-D and 3-D speed of a walk
    assert gps.values[:, 0].mean() == pytest.approx(33.127, abs=0.001)
    assert gps.values[:, 1].mean() == pytest.approx(-117.327, abs=0.001)
    assert 0.5 < np.median(gps.values[:, 3]) < 2.0


def test_agrees_with_gopro_reference_parser(sample: Path) -> None:
    """Values equal to GoPro's C gpmf-parser (py-gpmf-parser); stamps within 1.5 samples
    (it spreads each payload's samples uniformly over the payload, we fit one line)."""
    extractor = pytest.importorskip("py_gpmf_parser.gopro_telemetry_extractor")
    ours = read_gpmf(sample)
    reference = extractor.GoProTelemetryExtractor(str(sample))
    reference.open_source()
    try:
        for key in ("ACCL", "GYRO", "GPS5"):
            values, t = reference.extract_data(key)
            np.testing.assert_allclose(ours.sensors[key].values, values, atol=1e-9)
            assert np.abs(ours.sensors[key].t - t).max() < 1.5 / ours.sensors[key].rate
    finally:
        reference.close()


def test_prepare_gopro(sample: Path, tmp_path: Path) -> None:
    report = prepare("gopro", sample.parent, tmp_path / "manifest.jsonl", split="train")
    assert report.n_records == 1
    (record,) = load_manifest(tmp_path / "manifest.jsonl")
    assert (record.id, record.label, record.source) == ("gopro_max-heromode", "normal", "gopro")
    assert record.path("video").resolve() == sample.resolve()  # read in place, not copied
    assert record.metadata["gpmf_orientation"] == {"ACCL": "XzY", "GYRO": "XzY"}
    imu = imu_lib.load_imu(record.path("imu"))
    gps = imu_lib.load_gps(record.path("gps"))
    assert (len(imu.t), len(gps.t)) == (2082, 191)
    assert np.linalg.norm(imu.accel.mean(axis=0)) == pytest.approx(9.79, abs=0.01)
    assert imu.fs == pytest.approx(197.5, abs=1.0)
    assert np.isfinite(gps.speed).all()  # a 3-D fix throughout (GPSF = 3)


def test_file_without_gpmf(tmp_path: Path) -> None:
    """An mp4 without a GPMF track is an error naming the file, or a counted skip."""
    import av

    path = tmp_path / "videos" / "plain.mp4"
    path.parent.mkdir()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(SourceError, match=r"plain\.mp4: no GPMF telemetry track"):
        prepare("gopro", tmp_path / "videos", tmp_path / "m.jsonl")
    report = prepare("gopro", tmp_path / "videos", tmp_path / "m.jsonl", skip_missing=True)
    assert (report.n_records, report.reasons["no_gpmf_imu"]) == (0, 1)


def half_written(source: Path, target: Path) -> Path:
    """A copy of the GoPro file whose second half of media data was never written (zeros up
    to the index, which GoPro writes at the end and which stays intact)."""
    data = bytearray(source.read_bytes())
    index = data.find(b"moov") - 4
    half = index // 2
    data[half:index] = bytes(index - half)
    target.write_bytes(bytes(data))
    return target


def test_half_written_file_is_named_or_skipped(tmp_path: Path) -> None:
    """Issue 26.8: the file's telemetry stops at 5.0 s of its 10.51 s video. Before, it
    converted silently; now the conversion warns naming the file and the span, and with
    skip_missing the file is skipped, counted, and leaves no files behind."""
    video = half_written(require(GOPRO_SAMPLE), tmp_path / "half.mp4")
    report = prepare("gopro", video, tmp_path / "a" / "m.jsonl", split="train")
    assert report.n_records == 1 and report.notes["short_telemetry"] == 1
    assert report.warnings == [
        f"{video}: IMU covers -0.00 to 5.00 s of the 10.51 s video "
        "(converted; --skip-missing skips such files)"
    ]
    assert f"warning: {video}: IMU covers" in report.summary()
    skipped = prepare("gopro", video, tmp_path / "b" / "m.jsonl", split="train", skip_missing=True)
    assert skipped.n_records == 0 and skipped.reasons == {"short_telemetry": 1}
    assert f"  short_telemetry: {video}: IMU covers -0.00 to 5.00 s" in skipped.summary()
    assert list((tmp_path / "b" / "gopro").iterdir()) == []  # no orphan CSVs
