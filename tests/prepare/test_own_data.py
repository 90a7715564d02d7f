"""Issue 15 point 1: own data in (`sce data init --source private`, labels.csv captions and
metadata, `sce data prepare --help` layouts) and small sets whose splits never come out empty
silently."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from sce.cli import main
from sce.data.schema import load_manifest
from sce.prepare.splits import assign_splits

SIX = ["collision", "near_collision", "normal"] * 2  # 6 clips, 2 per class


def test_six_clips_get_a_val_and_a_test_clip() -> None:
    groups = {f"clip{i}": label for i, label in enumerate(SIX)}
    splits = dict(zip(groups, assign_splits(SIX, (0.9, 0.05, 0.05), 0, list(groups)), strict=True))
    # before: 6 / 0 / 0 (0.3 clips per class rounds to 0 for val and test)
    assert Counter(splits.values()) == Counter({"train": 4, "val": 1, "test": 1})
    # one clip each from two classes; train keeps every class
    assert {groups[g] for g, s in splits.items() if s == "train"} == set(SIX)
    assert Counter((s, groups[g]) for g, s in splits.items() if s != "train") == Counter(
        {("test", "collision"): 1, ("val", "near_collision"): 1}
    )
    # synthetic data at 60/20/20: before 3 / 3 / 0; the test clip comes from val, not train
    synth = assign_splits(SIX, (0.6, 0.2, 0.2))
    assert Counter(synth) == Counter({"train": 3, "val": 2, "test": 1})
    assert {lab for s, lab in zip(synth, SIX, strict=True) if s == "train"} == set(SIX)


@pytest.mark.parametrize(("n", "expected"), [(2, (2, 0, 0)), (3, (1, 1, 1)), (4, (2, 1, 1))])
def test_small_sets_fill_val_and_test_from_three_clips(n: int, expected: tuple) -> None:
    splits = assign_splits(["normal"] * n, (0.9, 0.05, 0.05), seed=0)
    assert tuple(Counter(splits)[s] for s in ("train", "val", "test")) == expected
    # a fraction of 0 asks for no split: nothing is moved into it
    none = assign_splits(["normal"] * n, (0.95, 0.05, 0.0), seed=0)
    assert "test" not in none


def own_six(root: Path, synthetic_manifest: Path, extra: dict[str, list[str]]) -> list[str]:
    """`sce data init` a folder, copy 6 synthetic clips into it and fill labels.csv (no split
    column values: the converter assigns them); returns the clip ids."""
    records = load_manifest(synthetic_manifest)[:6]
    assert main(["data", "init", "--source", "private", str(root)]) == 0
    header = (root / "labels.csv").read_text().strip().split(",")
    with (root / "labels.csv").open("a", newline="") as handle:
        writer = csv.DictWriter(handle, header)
        for k, record in enumerate(records):
            row = {"id": record.id, "label": record.label, "event_time": record.event_time}
            writer.writerow(row | {column: values[k] for column, values in extra.items()})
    for record in records:
        for name, folder in (("video", "videos"), ("imu", "imu"), ("gps", "gps")):
            source = record.path(name)
            shutil.copyfile(source, root / folder / f"{record.id}{source.suffix}")
    return [r.id for r in records]


def test_init_prepare_own_data_with_captions(
    tmp_path: Path, synthetic_manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "own"
    captions = [f"clip {k} caption" for k in range(5)] + [""]
    ids = own_six(root, synthetic_manifest, {"caption": captions, "metadata.weather": ["rain"] * 6})
    assert sorted(p.name for p in root.iterdir()) == [
        "README.txt", "gps", "imu", "labels.csv", "videos"
    ]  # fmt: skip
    assert (root / "labels.csv").read_text().splitlines()[0] == (
        "id,label,event_time,split,caption,instruction,metadata.weather"
    )
    readme = (root / "README.txt").read_text()
    for column in ("event_time", "caption", "metadata.KEY", "m/s²", "rad/s", "m/s (not km/h)"):
        assert column in readme
    assert main(["data", "init", str(root)]) == 2  # never overwrites a filled labels.csv
    out = root / "manifest.jsonl"
    assert (
        main(["data", "prepare", "--source", "private", "--root", str(root), "--out", str(out)])
        == 0
    )
    summary = capsys.readouterr().out
    records = {r.id: r for r in load_manifest(out)}
    assert list(records) == ids
    assert Counter(r.split for r in records.values()) == Counter(train=4, val=1, test=1)
    assert records[ids[0]].annotations == {"caption": "clip 0 caption"}
    assert records[ids[5]].annotations == {}  # an empty cell is no caption
    assert records[ids[0]].metadata == {"weather": "rain"}
    assert "warning" not in summary
    # 2 clips cannot fill val and test: the summary says so, naming the counts
    (root / "labels.csv").write_text("\n".join((root / "labels.csv").read_text().split("\n")[:3]))
    assert (
        main(["data", "prepare", "--source", "private", "--root", str(root), "--out", str(out)])
        == 0
    )
    assert "warning: split(s) val, test came out empty (train 2, val 0, test 0)" in (
        capsys.readouterr().out
    )


def test_prepare_help_documents_every_source_layout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    text = capsys.readouterr().out
    for source in ("nexar", "nexar_hf", "bddx", "lingoqa", "private", "synthetic"):
        assert f"--source {source}: " in text
    assert "root/imu/<id>.csv       t,ax,ay,az,gx,gy,gz   (s from the clip start" in text
    assert "-o options: labels='labels.csv', video_dir='videos', imu_dir='imu'" in text
    assert "sce data init --source private DIR" in text
