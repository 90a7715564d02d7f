"""`sce data validate`: a clean manifest passes; each kind of bad record is found and counted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sce.data.schema import load_manifest
from sce.data.validate import (
    ValidationReport,
    add_validate_arguments,
    check_record,
    validate_command,
    validate_manifest,
)


def _args(manifest: Path, no_decode: bool = False) -> argparse.Namespace:
    return argparse.Namespace(manifest=str(manifest), before=4.0, after=2.0, no_decode=no_decode)


@pytest.fixture(scope="module")
def bad_manifest(synthetic_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good records of the synthetic set (absolute paths) plus one bad record of each kind."""
    folder = tmp_path_factory.mktemp("bad_manifest")
    good = [r.to_json() for r in load_manifest(synthetic_manifest)]
    for data, record in zip(good, load_manifest(synthetic_manifest), strict=True):
        data.update(video=str(record.path("video")), imu=str(record.path("imu")))
        data.update(gps=str(record.path("gps")))
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
    assert "9 records checked: no problems" in capsys.readouterr().out


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
    assert report.examples["video does not decode"][0].startswith("corrupt: ")
    assert [e.split(":")[0] for e in report.examples["imu unreadable"]] == ["header", "binary"]
    assert "lacks column(s) ['t']" in report.examples["imu unreadable"][0]
    assert report.examples["event_time outside clip"] == ["outside: 12.00 s of 7.00 s"]
    assert report.examples["imu shorter than video"] == ["short: 2.0 s of 7.0 s"]
    assert report.examples["invalid JSON"][0].startswith("line 7")
    assert report.examples["schema: label"][0].startswith("line 8: unknown label 'crash'")
    assert report.examples["schema: duplicate id"][0].startswith("line 9: ")
    assert len(report.bad_records) == 8


def test_table_lists_problems_with_counts(bad_manifest: Path) -> None:
    table = validate_manifest(bad_manifest).table().splitlines()
    assert table[0].split() == ["problem", "count", "examples"]
    rows = {line[: line.index("  ")].strip(): line for line in table[2:-1]}
    assert rows["imu unreadable"].split("  ")[-1].startswith("header: ")
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
    assert (args.before, args.after, args.no_decode) == (3.0, 2.0, True)
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
    assert example.startswith("seg1: field 'metadata.frames': 1 of 3 images, first ")
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
