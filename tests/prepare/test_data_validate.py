"""`sce data validate`: a clean manifest passes; each kind of bad record is found and counted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from sce.data.schema import load_manifest
from sce.prepare.validate import ValidationReport, check_record, validate_manifest
from sce.train.checks import add_validate_arguments, validate_command


def _args(manifest: Path, no_decode: bool = False) -> argparse.Namespace:
    return argparse.Namespace(
        manifest=str(manifest), before=4.0, after=2.0, no_decode=no_decode, fps=3.0
    )


def _absolute_rows(synthetic_manifest: Path) -> list[dict]:
    """The synthetic records as manifest dicts whose video/imu/gps paths are absolute."""
    rows = []
    for record in load_manifest(synthetic_manifest):
        data = record.to_json()
        data.update(video=str(record.path("video")), imu=str(record.path("imu")))
        data.update(gps=str(record.path("gps")))
        rows.append(data)
    return rows


@pytest.fixture(scope="module")
def bad_manifest(synthetic_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good records of the synthetic set (absolute paths) plus one bad record of each kind."""
    folder = tmp_path_factory.mktemp("bad_manifest")
    good = _absolute_rows(synthetic_manifest)
    imu_lines = Path(good[0]["imu"]).read_text().splitlines()

    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (folder / "header.csv").write_text("time,ax,ay,az,gx,gy,gz\n" + "\n".join(imu_lines[1:]) + "\n")
    (folder / "short.csv").write_text("\n".join(imu_lines[:201]) + "\n")  # 2 s of a 7 s clip
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 8)
    rows = [
        good[0],
        {**good[1], "id": "corrupt", "video": "corrupt.mp4"},
        {**good[2], "id": "header", "imu": "header.csv"},
        {**good[3], "id": "outside", "event_time": 12.0},
        {**good[4], "id": "short", "imu": "short.csv"},
        {**good[5], "id": "binary", "imu": "binary.csv"},
        {**good[6], "label": "crash"},
        {**good[0], "split": "train"},  # duplicate id of line 1
        good[7],
    ]
    path = folder / "manifest.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(6, "{not json")
    path.write_text("\n".join(lines) + "\n\n")
    return path


def test_clean_synthetic_manifest(synthetic_manifest: Path, capsys: pytest.CaptureFixture) -> None:
    report = validate_manifest(synthetic_manifest)
    assert report.ok and report.records == 9 and not report.bad_records
    assert report.table() == "9 records checked: no problems"
    assert validate_command(_args(synthetic_manifest)) == 0
    captured = capsys.readouterr()
    assert "9 records checked: no problems" in captured.out
    # the bar counts the 9 lines, not the empty string after the final newline (issue 27)
    assert "9/9" in captured.err and "10/10" not in captured.err


def test_bad_records_are_found_and_counted(bad_manifest: Path) -> None:
    report = validate_manifest(bad_manifest)
    assert report.records == 10  # the trailing blank line is not a record
    assert dict(report.problems) == {
        "video does not decode": 1,
        "imu unreadable": 2,
        "event_time outside clip": 1,
        "imu shorter than video": 1,
        "invalid JSON": 1,
        "schema: label": 1,
        "schema: duplicate id": 1,
    }
    # every example names the manifest line and, where it could be read, the record's id
    assert report.examples["video does not decode"][0].startswith("line 2, id 'corrupt': ")
    assert [e.split(":")[0] for e in report.examples["imu unreadable"]] == [
        "line 3, id 'header'",
        "line 6, id 'binary'",
    ]
    assert "lacks column(s) ['t']" in report.examples["imu unreadable"][0]
    assert report.examples["event_time outside clip"] == ["line 4, id 'outside': 12.00 s of 7.00 s"]
    assert report.examples["imu shorter than video"] == ["line 5, id 'short': 2.0 s of 7.0 s"]
    assert report.examples["invalid JSON"][0].startswith("line 7: ")  # no id can be read
    assert report.examples["schema: label"][0].startswith(
        "line 8, id 'synth_0_00006': unknown label 'crash'"
    )
    assert report.examples["schema: duplicate id"] == [
        "line 9, id 'synth_0_00000': first on line 1"
    ]
    assert len(report.bad_records) == 8


def test_table_lists_problems_with_counts(bad_manifest: Path) -> None:
    table = validate_manifest(bad_manifest).table().splitlines()
    assert table[0].split() == ["problem", "count", "examples"]
    rows = {line[: line.index("  ")].strip(): line for line in table[2:-1]}
    assert rows["imu unreadable"].split("  ")[-1].startswith("line 3, id 'header': ")
    assert rows["imu unreadable"].split()[2] == "2"
    assert rows["event_time outside clip"].split()[3] == "1"
    assert table[2].startswith("imu unreadable")  # most common first
    assert table[-1] == "8 of 10 records have problems"


def test_validate_command_exit_codes(
    bad_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert validate_command(_args(bad_manifest)) == 1
    assert "video does not decode" in capsys.readouterr().out
    assert validate_command(_args(tmp_path / "none.jsonl")) == 2
    assert "manifest not found" in capsys.readouterr().out


def test_argument_parser(bad_manifest: Path) -> None:
    parser = add_validate_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(bad_manifest), "--before", "3", "--no-decode"])
    # an unset window option is None: 2 s, or the config's with --config
    assert (args.before, args.after, args.no_decode) == (3.0, None, True)
    assert validate_command(args) == 1


def test_clip_shorter_than_window(synthetic_manifest: Path) -> None:
    report = validate_manifest(synthetic_manifest, before=6.0, after=2.0, decode=False)
    assert report.problems == {"clip shorter than window": 9}
    assert report.examples["clip shorter than window"][0].endswith(": 7.0 s < 8.0 s")


def _lingoqa_manifest(folder: Path, broken: str = "") -> Path:
    """Two LingoQA-style image-sequence records (`video` = the frames' folder); in record "seg1"
    the image `broken` is deleted ("missing") or overwritten with garbage ("corrupt")."""
    from PIL import Image

    rows = []
    for seg in ("seg0", "seg1"):
        (folder / "images" / seg).mkdir(parents=True)
        frames = [f"images/{seg}/{i}.jpg" for i in range(3)]
        for i, name in enumerate(frames):
            Image.new("RGB", (16, 8), (40 * i, 0, 0)).save(folder / name)
        rows.append(
            {
                "id": seg,
                "video": f"images/{seg}",
                "label": "normal",
                "source": "lingoqa",
                "split": "test",
                "metadata": {"frames": frames, "segment_id": seg},
            }
        )
    if broken == "missing":
        (folder / "images/seg1/1.jpg").unlink()
    elif broken == "corrupt":
        (folder / "images/seg1/2.jpg").write_bytes(b"not an image")
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_image_sequence_records_pass(tmp_path: Path) -> None:
    report = validate_manifest(_lingoqa_manifest(tmp_path))
    assert report.ok and report.records == 2, report.table()
    assert validate_command(_args(tmp_path / "manifest.jsonl")) == 0


@pytest.mark.parametrize(("broken", "image"), [("missing", "1.jpg"), ("corrupt", "2.jpg")])
def test_image_sequence_bad_image_names_sample(tmp_path: Path, broken: str, image: str) -> None:
    report = validate_manifest(_lingoqa_manifest(tmp_path, broken))
    assert dict(report.problems) == {"image missing or unreadable": 1}
    assert report.bad_records == {"seg1"}
    example = report.examples["image missing or unreadable"][0]
    assert example.startswith("line 2, id 'seg1': field 'metadata.frames': 1 of 3 images, first ")
    assert f"images/seg1/{image}" in example


def test_image_sequence_no_decode_still_finds_missing(tmp_path: Path) -> None:
    assert validate_manifest(_lingoqa_manifest(tmp_path, "corrupt"), decode=False).ok
    other = tmp_path / "other"
    other.mkdir()
    report = validate_manifest(_lingoqa_manifest(other, "missing"), decode=False)
    assert report.bad_records == {"seg1"}


def test_decode_checks_event_window_bounds(
    synthetic_manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames at the window's start and end are decoded (clip 7 s), not t=0 and the middle."""
    from sce.data import video as video_lib

    record = load_manifest(synthetic_manifest)[0]
    seen: list[list[float]] = []
    real = video_lib.read_frames
    monkeypatch.setattr(
        video_lib, "read_frames", lambda p, t, **kw: (seen.append(list(t)), real(p, t, **kw))[1]
    )
    # (event_time, before, window start/end): centred, shifted inside the clip at either
    # end, no event time (whole clip), window longer than the clip (clipped to [0, 7]).
    cases = [
        (4.5, 4.0, [0.5, 6.5]),
        (3.0, 4.0, [0.0, 6.0]),
        (6.5, 4.0, [1.0, 7.0]),
        (None, 4.0, [0.0, 7.0]),
        (4.5, 6.0, [0.0, 7.0]),
    ]
    for event_time, before, expected in cases:
        record.event_time = event_time
        report = ValidationReport()
        check_record(record, report, before=before, after=2.0, decode=True)
        assert set(report.problems) <= {"clip shorter than window"}
        assert seen[-1] == pytest.approx(expected)


# --------------------------------------------------------------------------------------------
# IMU / GPS telemetry defects: wrong units, NaN samples, non-monotonic time
# --------------------------------------------------------------------------------------------

IMU_HEADER = "t,ax,ay,az,gx,gy,gz"
G = 9.81  # m/s^2 per g


def _load_csv(path: str) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def _write_csv(path: Path, header: str, data: np.ndarray) -> str:
    np.savetxt(path, data, delimiter=",", header=header, comments="", fmt="%.6f")  # NaN -> "nan"
    return str(path)


def _imu_defects(rows: list[dict], folder: Path) -> dict[str, dict]:
    """One record per detected defect, each on a good synthetic clip with its own bad CSV."""
    imu = [_load_csv(r["imu"]) for r in rows]

    mg = imu[0].copy()
    mg[:, 1:4] *= 1000.0 / G  # accelerations in milli-g instead of m/s^2

    deg = imu[0].copy()
    deg[300:400, 6] = 1.0  # a 1 rad/s yaw (a spin) for one second ...
    deg[:, 4:7] *= 180.0 / np.pi  # ... logged in deg/s: 57.3

    nan_accel = imu[1].copy()
    nan_accel[10:13, 1] = np.nan  # 3 rows with ax missing
    nan_accel[20, 2:4] = np.nan  # 1 row with ay, az missing -> 4 rows

    swap = imu[2].copy()
    swap[[100, 101], 0] = swap[[101, 100], 0]  # t: 0.99, 1.01, 1.00, 1.02 (file lines 101-104)

    dup = imu[3].copy()
    dup[200, 0] = dup[199, 0]  # t: 1.99, 1.99 (file lines 201, 202)

    nan_t = imu[4].copy()
    nan_t[50, 0] = np.nan  # file line 52

    gps_kmh = _load_csv(rows[5]["gps"])
    gps_kmh[:, 1] *= 3.6  # clip 5 peaks at 30.901 m/s = 111.24 km/h

    gps_swap = _load_csv(rows[6]["gps"])
    gps_swap[[3, 4], 0] = [4.0, 3.0]  # t: 0, 1, 2, 4, 3, ... (file lines 5, 6)

    def imu_row(i: int, name: str, data: np.ndarray) -> dict:
        return {**rows[i], "id": name, "imu": _write_csv(folder / f"{name}.csv", IMU_HEADER, data)}

    def gps_row(i: int, name: str, data: np.ndarray) -> dict:
        return {**rows[i], "id": name, "gps": _write_csv(folder / f"{name}.csv", "t,speed", data)}

    return {
        "mg": imu_row(0, "mg", mg),
        "deg": imu_row(0, "deg", deg),
        "nan_accel": imu_row(1, "nan_accel", nan_accel),
        "swap": imu_row(2, "swap", swap),
        "dup": imu_row(3, "dup", dup),
        "nan_t": imu_row(4, "nan_t", nan_t),
        "kmh": gps_row(5, "kmh", gps_kmh),
        "gps_swap": gps_row(6, "gps_swap", gps_swap),
    }


@pytest.fixture(scope="module")
def telemetry_manifest(synthetic_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good record (clip 7) followed by one record per telemetry defect."""
    folder = tmp_path_factory.mktemp("telemetry")
    rows = _absolute_rows(synthetic_manifest)
    path = folder / "manifest.jsonl"
    lines = [rows[7], *_imu_defects(rows, folder).values()]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def report_examples(report: ValidationReport, problem: str) -> list[str]:
    """Examples of one problem ("sample: detail"), [] when it was not reported."""
    return list(report.examples.get(problem, []))


@pytest.fixture(scope="module")
def telemetry_report(telemetry_manifest: Path) -> ValidationReport:
    return validate_manifest(telemetry_manifest)


def test_telemetry_defects_counted(telemetry_report: ValidationReport) -> None:
    report = telemetry_report
    assert report.records == 9
    assert dict(report.problems) == {
        "imu accel out of range (units?)": 1,
        "imu gyro out of range (deg/s?)": 1,
        "gps speed out of range (km/h?)": 1,
        "imu has NaN samples": 1,
        "imu unreadable": 3,
        "gps unreadable": 1,
    }
    good = "synth_0_00007"
    assert good not in report.bad_records
    defects = {"mg", "deg", "nan_accel", "swap", "dup", "nan_t", "kmh", "gps_swap"}
    assert report.bad_records == defects


def test_accel_in_milli_g_flagged(telemetry_report: ValidationReport, synthetic_manifest) -> None:
    """Clip 0's largest |a| is gravity on z, 9.95 m/s^2 = 1014.3 mg > 200."""
    a_max = np.abs(_load_csv(str(load_manifest(synthetic_manifest)[0].path("imu")))[:, 1:4]).max()
    assert 9.9 < a_max < 10.0  # hand-check of the premise
    expected = f"line 2, id 'mg': max |a| {a_max * 1000 / G:.1f}"
    assert report_examples(telemetry_report, "imu accel out of range (units?)") == [expected]


def test_gyro_in_deg_per_s_flagged(telemetry_report: ValidationReport) -> None:
    """1 rad/s written as 57.2958 deg/s exceeds the 50 (rad/s) bound."""
    examples = report_examples(telemetry_report, "imu gyro out of range (deg/s?)")
    assert examples == ["line 3, id 'deg': max |w| 57.3"]


def test_gps_speed_in_km_per_h_flagged(telemetry_report: ValidationReport) -> None:
    """30.901 m/s * 3.6 = 111.24 km/h > 100."""
    examples = report_examples(telemetry_report, "gps speed out of range (km/h?)")
    assert examples == ["line 8, id 'kmh': max 111.2"]


def test_nan_accel_rows_counted(telemetry_report: ValidationReport) -> None:
    assert report_examples(telemetry_report, "imu has NaN samples") == [
        "line 4, id 'nan_accel': 4 rows"
    ]


def test_non_monotonic_and_missing_time_unreadable(telemetry_report: ValidationReport) -> None:
    """A time step back, a repeated stamp and a NaN stamp each name the file's line."""
    examples = report_examples(telemetry_report, "imu unreadable")
    assert [e.split(":")[0] for e in examples] == [
        "line 5, id 'swap'",
        "line 6, id 'dup'",
        "line 7, id 'nan_t'",
    ]
    assert examples[0].endswith(
        "swap.csv: line 103, column 't': time not strictly increasing (1.010000 -> 1.000000)"
    )
    assert examples[1].endswith(
        "dup.csv: line 202, column 't': time not strictly increasing (1.990000 -> 1.990000)"
    )
    assert examples[2].endswith("nan_t.csv: line 52, column 't': missing time stamp")
    gps = report_examples(telemetry_report, "gps unreadable")
    assert len(gps) == 1 and gps[0].startswith("line 9, id 'gps_swap': ")
    assert gps[0].endswith(
        "gps_swap.csv: line 6, column 't': time not strictly increasing (4.000000 -> 3.000000)"
    )


def test_telemetry_table_and_exit_code(
    telemetry_manifest: Path, capsys: pytest.CaptureFixture
) -> None:
    assert validate_command(_args(telemetry_manifest, no_decode=True)) == 1
    table = capsys.readouterr().out.strip().splitlines()
    table = table[next(i for i, line in enumerate(table) if line.startswith("problem")) :]
    rows = {
        line[: line.index("  ")].strip(): line[line.index("  ") :].split() for line in table[2:-1]
    }
    counts = {problem: int(cells[0]) for problem, cells in rows.items()}
    assert counts["imu unreadable"] == 3 and counts["imu has NaN samples"] == 1
    assert counts["gps speed out of range (km/h?)"] == 1
    assert table[2].startswith("imu unreadable")  # most common first
    assert table[-1] == "8 of 9 records have problems"


# Telemetry defects in one record each. The unit mistakes that fall inside the plausibility
# bounds (validate.py says why there is no tighter bound) are strict xfails: known limits.
def _single(rows: list[dict], folder: Path, index: int, kind: str, data: np.ndarray) -> Path:
    header = IMU_HEADER if kind == "imu" else "t,speed"
    row = {**rows[index], "id": "bad", kind: _write_csv(folder / f"bad_{kind}.csv", header, data)}
    path = folder / "manifest.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path


def _accel_in_g(imu: np.ndarray, gps: np.ndarray) -> tuple[str, np.ndarray]:
    imu = imu.copy()
    imu[:, 1:4] /= G  # |a| <= 1.02: below MAX_ABS_ACCEL, and no lower bound on |a|
    return "imu", imu


def _gyro_deg_normal_driving(imu: np.ndarray, gps: np.ndarray) -> tuple[str, np.ndarray]:
    imu = imu.copy()
    imu[:, 4:7] *= 180.0 / np.pi  # 0.053 rad/s -> 3.0 deg/s, far under 50
    return "imu", imu


def _gps_kmh_city(imu: np.ndarray, gps: np.ndarray) -> tuple[str, np.ndarray]:
    gps = gps.copy()
    gps[:, 1] *= 3.6  # 14.685 m/s -> 52.9 km/h, under 100
    return "gps", gps


def _gps_nan(imu: np.ndarray, gps: np.ndarray) -> tuple[str, np.ndarray]:
    gps = gps.copy()
    gps[2:4, 1] = np.nan
    return "gps", gps


def _gyro_nan(imu: np.ndarray, gps: np.ndarray) -> tuple[str, np.ndarray]:
    imu = imu.copy()
    imu[30:32, 6] = np.nan  # gyro-only NaN rows count too
    return "imu", imu


@pytest.mark.parametrize(
    ("make", "problem", "detail"),
    [
        pytest.param(
            _accel_in_g,
            "imu accel out of range (units?)",
            None,
            marks=pytest.mark.xfail(strict=True, reason="only |a| > 200 is flagged; g reads ~1"),
        ),
        pytest.param(
            _gyro_deg_normal_driving,
            "imu gyro out of range (deg/s?)",
            None,
            marks=pytest.mark.xfail(strict=True, reason="deg/s flagged only above 50 deg/s"),
        ),
        pytest.param(
            _gps_kmh_city,
            "gps speed out of range (km/h?)",
            None,
            marks=pytest.mark.xfail(strict=True, reason="km/h flagged only above 100 km/h"),
        ),
        pytest.param(
            _gps_nan,
            "gps has NaN samples",
            None,
        ),
        pytest.param(
            _gyro_nan,
            "imu has NaN samples",
            "line 1, id 'bad': 2 rows",
        ),
    ],
)
def test_single_telemetry_defects(
    synthetic_manifest: Path, tmp_path: Path, make, problem: str, detail: str | None
) -> None:
    rows = _absolute_rows(synthetic_manifest)
    kind, data = make(_load_csv(rows[0]["imu"]), _load_csv(rows[0]["gps"]))
    manifest = _single(rows, tmp_path, 0, kind, data)
    report = validate_manifest(manifest, decode=False)
    assert dict(report.problems) == {problem: 1}
    if detail is not None:
        assert report.examples[problem] == [detail]
    assert validate_command(_args(manifest, no_decode=True)) == 1


def test_windows_that_would_shrink_are_counted(synthetic_manifest: Path, tmp_path: Path) -> None:
    # Paper 001's 6 s window at 30 fps (180 frames) on a 5 s chunk of the 7 s clips keeps 150
    # frames: a note (intended), not an error; whole 7 s clips hold the window.
    rows = _absolute_rows(synthetic_manifest)
    for row in rows[:2]:
        row["metadata"] = {**row.get("metadata", {}), "clip_start": 1.0, "clip_end": 6.0}
    path = tmp_path / "chunks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = validate_manifest(path, before=4.0, after=2.0, decode=False, fps=30.0)
    assert report.ok and report.notes == {"window_shrunk": 2}
    assert report.note_examples["window_shrunk"][0].endswith("5.00 s of 6.00 s, 30 frames lost")
    assert "note: window_shrunk: 2 of 9 records" in report.table()
    assert not validate_manifest(synthetic_manifest, decode=False, fps=30.0).notes


def test_schema_problems_name_line_and_id(
    synthetic_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Each schema problem names its manifest line and, wherever it could be read, the id."""
    good = _absolute_rows(synthetic_manifest)
    no_id = {k: v for k, v in good[3].items() if k != "id"}
    lines = [
        json.dumps(good[0]),  # line 1: fine
        '{"id": "clip_a", "video": ',  # line 2: (a) JSON cut short: no id can be read
        json.dumps({**good[1], "id": "clip_b", "video": "missing/clip_b.mp4"}),  # (b)
        json.dumps({**good[2], "id": "clip_c", "event_time": "4.5"}),  # (c) a bad field
        json.dumps({**no_id, "label": "crash"}),  # line 5: (d) no id
        json.dumps({**good[4], "id": "clip_e", "label": "event"}),  # label scope
        json.dumps({**good[5], "id": "clip_f", "annotations": {"probability": 87}}),  # range
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = validate_manifest(path, decode=False)
    assert report.records == 7 and len(report.bad_records) == 6
    assert report.examples["invalid JSON"] == ["line 2: Expecting value"]
    assert report.examples["schema: video"] == [
        f"line 3, id 'clip_b': file not found: {tmp_path / 'missing/clip_b.mp4'}"
    ]
    assert report.examples["schema: event_time"] == [
        "line 4, id 'clip_c': expected seconds as a number, got '4.5'"
    ]
    assert report.examples["schema: id"] == ["line 5: missing"]
    assert report.examples["schema: label"] == [
        "line 6, id 'clip_e': label 'event' belongs to label_scope 'binary', but the record's "
        "label_scope is 'three_class' (labels ('collision', 'near_collision', 'normal'))"
    ]
    assert report.examples["schema: annotations.probability"] == [
        "line 7, id 'clip_f': must be within [0, 1] (a percentage?), got 87"
    ]
    assert validate_command(_args(path, no_decode=True)) == 1
    out = capsys.readouterr().out
    for examples in report.examples.values():
        assert examples[0] in out
    assert "6 of 7 records have problems" in out
