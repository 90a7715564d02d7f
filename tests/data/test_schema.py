"""Manifest schema: validation errors name the line and field; write/load round trip; splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sce.data.schema import ClipRecord, ManifestError, load_manifest, parse_record, write_manifest


def _good(i: int, split: str = "train", **extra) -> dict:
    return {
        "id": f"clip{i}",
        "video": f"videos/clip{i}.mp4",
        "label": "collision",
        "source": "private",
        "split": split,
        "imu": f"imu/clip{i}.csv",
        "gps": None,
        "event_time": 4.5,
        "metadata": {"weather": "rain"},
        "annotations": {"caption": "A crash."},
        **extra,
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A manifest folder with the files of clip0..clip3."""
    for i in range(4):
        for name in (f"videos/clip{i}.mp4", f"imu/clip{i}.csv"):
            (tmp_path / name).parent.mkdir(exist_ok=True)
            (tmp_path / name).write_text("x")
    return tmp_path


def _write_lines(folder: Path, lines: list[str]) -> Path:
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _bad_third_line(folder: Path, bad: str) -> Path:
    """Two good records, then the bad line (line 3)."""
    return _write_lines(folder, [json.dumps(_good(0)), json.dumps(_good(1)), bad])


def _drop(data: dict, key: str) -> dict:
    return {k: v for k, v in data.items() if k != key}


@pytest.mark.parametrize(
    ("bad", "field", "detail"),
    [
        (_drop(_good(2), "label"), "label", "missing"),
        (_drop(_good(2), "video"), "video", "missing"),
        ({**_good(2), "split": ""}, "split", "missing"),
        ({**_good(2), "label": "crash"}, "label", "unknown label 'crash'"),
        ({**_good(2), "split": "dev"}, "split", "unknown split 'dev'"),
        ({**_good(2), "video": "videos/none.mp4"}, "video", "file not found"),
        ({**_good(2), "imu": "imu/none.csv"}, "imu", "file not found"),
        ({**_good(2), "imu": 5}, "imu", "expected a path string"),
        ({**_good(2), "id": 7}, "id", "expected a string"),
        ({**_good(2), "event_time": "4.5"}, "event_time", "expected seconds"),
        ({**_good(2), "event_time": True}, "event_time", "expected seconds"),
        ({**_good(2), "event_time": -1.0}, "event_time", "non-negative"),
        ({**_good(2), "metadata": [1]}, "metadata", "JSON object"),
        ({**_good(2), "labels": "collision"}, "labels", "unknown field"),
        # label scopes: a binary record (event / no event) never carries a 3-class label
        (
            {**_good(2), "label_scope": "binary"},
            "label",
            "label 'collision' belongs to label_scope 'three_class', but the "
            "record's label_scope is 'binary' (labels ('event', 'normal'))",
        ),
        (
            {**_good(2), "label": "event"},
            "label",
            "label 'event' belongs to label_scope 'binary'",
        ),
        (
            {**_good(2), "label_scope": "ternary"},
            "label_scope",
            "unknown scope 'ternary'",
        ),
        ({**_good(0)}, "id", "duplicate id 'clip0' (first on line 1)"),
        # paper 002's probability target: a number within [0, 1]
        (
            {**_good(2), "annotations": {"probability": 87}},
            "annotations.probability",
            "must be within [0, 1] (a percentage?), got 87",
        ),
        (
            {**_good(2), "annotations": {"probability": "0.87"}},
            "annotations.probability",
            "expected a number, got a string '0.87'",
        ),
        (
            {**_good(2), "annotations": {"probability": -0.1}},
            "annotations.probability",
            "must be within [0, 1], got -0.1",
        ),
        (
            {**_good(2), "annotations": {"probability": 1000}},
            "annotations.probability",
            "must be within [0, 1], got 1000",  # no percentage hint
        ),
        (
            {**_good(2), "annotations": {"probability": True}},
            "annotations.probability",
            "expected a number, got bool True",
        ),
    ],
)
def test_bad_record_names_line_and_field(folder: Path, bad: dict, field: str, detail: str) -> None:
    path = _bad_third_line(folder, json.dumps(bad))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    message = str(err.value)
    # the id is named wherever it can be read (not for `"id": 7`)
    record_id = bad["id"] if isinstance(bad.get("id"), str) else None
    located = f"{path} line 3" + (f", id {record_id!r}" if record_id else "")
    assert f"{located}: field '{field}'" in message
    assert detail in message
    assert (err.value.where, err.value.field) == (located, field)


def test_binary_scope_round_trip(folder: Path) -> None:
    rows = [
        {**_good(0), "label": "event", "label_scope": "binary"},
        {**_good(1), "label": "normal", "label_scope": "binary"},
        _good(2),  # no label_scope: three_class
    ]
    loaded = load_manifest(_write_lines(folder, [json.dumps(r) for r in rows]))
    assert [(r.label, r.label_scope, r.class_index) for r in loaded] == [
        ("event", "binary", 0), ("normal", "binary", 1), ("collision", "three_class", 0)
    ]  # fmt: skip
    again = load_manifest(write_manifest(loaded, folder / "again.jsonl"))
    assert [(r.label, r.label_scope) for r in again] == [(r.label, r.label_scope) for r in loaded]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_event_time(folder: Path, value: str) -> None:
    line = json.dumps(_good(2)).replace('"event_time": 4.5', f'"event_time": {value}')
    with pytest.raises(ManifestError, match="line 3, id 'clip2': field 'event_time'"):
        load_manifest(_bad_third_line(folder, line))


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_non_finite_probability(folder: Path, value: str) -> None:
    line = json.dumps({**_good(2), "annotations": {"probability": 0.5}})
    line = line.replace('"probability": 0.5', f'"probability": {value}')
    with pytest.raises(ManifestError) as err:
        load_manifest(_bad_third_line(folder, line))
    assert "line 3, id 'clip2': field 'annotations.probability': must be finite" in str(err.value)


def test_probability_in_range_loads(folder: Path) -> None:
    rows = [{**_good(i), "annotations": {"probability": p}} for i, p in enumerate([0, 0.8725, 1])]
    loaded = load_manifest(_write_lines(folder, [json.dumps(r) for r in rows]))
    assert [r.annotations["probability"] for r in loaded] == [0, 0.8725, 1]


def test_bad_json_names_line(folder: Path) -> None:
    path = _bad_third_line(folder, '{"id": "clip2", "video": ')
    with pytest.raises(ManifestError, match=r"line 3: invalid JSON"):
        load_manifest(path)
    path = _bad_third_line(folder, "[1, 2]")  # parses, but no id can be read from a list
    with pytest.raises(ManifestError, match="line 3: expected a JSON object, got list"):
        load_manifest(path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "none.jsonl")


def test_check_files_off_accepts_missing_files(tmp_path: Path) -> None:
    path = _write_lines(tmp_path, [json.dumps(_good(0))])
    with pytest.raises(ManifestError, match="field 'video'"):
        load_manifest(path)
    (record,) = load_manifest(path, check_files=False)
    assert record.path("video") == tmp_path / "videos/clip0.mp4"
    assert record.path("gps") is None


def test_round_trip(folder: Path) -> None:
    absolute = str(folder / "videos/clip3.mp4")
    records = [
        parse_record(_good(0), folder),
        parse_record(_good(1, "val", event_time=None, imu=None), folder),
        parse_record(_good(2, "test", label="normal"), folder),
        parse_record(_good(3, video=absolute), folder),
    ]
    path = write_manifest(records, folder / "out" / "manifest.jsonl")
    assert not path.with_suffix(".jsonl.tmp").exists()
    assert path.read_text().count("\n") == 4
    assert "root" not in json.loads(path.read_text().splitlines()[0])
    loaded = load_manifest(path, check_files=False)
    assert [r.to_json() for r in loaded] == [r.to_json() for r in records]
    assert all(r.root == str(folder / "out") for r in loaded)
    assert loaded[1].event_time is None and loaded[1].imu is None
    assert loaded[3].path("video") == Path(absolute)
    assert loaded[2].class_index == 2 and loaded[0].class_index == 0
    assert loaded[0].metadata == {"weather": "rain"}
    assert loaded[0].annotations == {"caption": "A crash."}


def test_write_accepts_dicts_and_int_event_time(folder: Path) -> None:
    path = write_manifest([_good(0, event_time=4)], folder / "manifest.jsonl")
    (record,) = load_manifest(path)
    assert isinstance(record, ClipRecord)
    assert record.event_time == 4.0 and isinstance(record.event_time, float)
    assert record.path("imu") == folder / "imu/clip0.csv"


def test_splits_filter(folder: Path) -> None:
    splits = ["train", "val", "test", "train"]
    lines = [json.dumps(_good(i, s)) for i, s in enumerate(splits)] + [""]  # blank line skipped
    path = _write_lines(folder, lines)
    assert [r.id for r in load_manifest(path)] == ["clip0", "clip1", "clip2", "clip3"]
    assert [r.id for r in load_manifest(path, splits=["train"])] == ["clip0", "clip3"]
    assert [r.id for r in load_manifest(path, splits=("val", "test"))] == ["clip1", "clip2"]
    assert load_manifest(path, splits=[]) == []


def test_duplicate_id_in_other_split_still_fails(folder: Path) -> None:
    path = _write_lines(folder, [json.dumps(_good(0, "train")), json.dumps(_good(0, "val"))])
    with pytest.raises(ManifestError, match="line 2, id 'clip0': field 'id': duplicate"):
        load_manifest(path, splits=["train"])


def test_load_error_names_line_id_field_and_file(folder: Path) -> None:
    """The error a training run stops on names the line, the record's id, the field and the
    missing file; the same parts are attributes for reports."""
    bad = {**_good(2), "id": "clip_b", "video": "videos/clip_b.mp4"}
    path = _bad_third_line(folder, json.dumps(bad))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    missing = folder / "videos/clip_b.mp4"
    assert str(err.value) == (
        f"{path} line 3, id 'clip_b': field 'video': file not found: {missing}"
    )
    assert (err.value.where, err.value.field) == (f"{path} line 3, id 'clip_b'", "video")
    assert err.value.detail == f"file not found: {missing}"


def test_error_without_readable_id_names_the_line_only(folder: Path) -> None:
    path = _bad_third_line(folder, json.dumps(_drop(_good(2), "id")))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value) == f"{path} line 3: field 'id': missing"
    path = _bad_third_line(folder, json.dumps({**_good(2), "id": ""}))  # empty: not readable
    with pytest.raises(ManifestError, match=r"line 3: field 'id': missing$"):
        load_manifest(path)
