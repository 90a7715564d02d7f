"""The researcher's loop as the README runs it (issue 15): own data scaffold -> prepare ->
validate -> fit -> test -> export -> infer -> predict, on the tiny kit, each step through `sce`'s own
command line, each step reading what the previous one wrote."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from helpers.paths import EXPERIMENTS

from sce.cli import main
from sce.data.schema import load_manifest
from sce.train.record import read_training_record


def _own_data(root: Path, synthetic_manifest: Path) -> list:
    """Fill an `sce data init` folder with the synthetic clips, as a researcher would."""
    records = load_manifest(synthetic_manifest)
    for record in records:
        for kind, folder in (("video", "videos"), ("imu", "imu"), ("gps", "gps")):
            source = record.path(kind)
            shutil.copy(source, root / folder / f"{record.id}{source.suffix}")
    with (root / "labels.csv").open("a", newline="") as f:
        writer = csv.writer(f)
        for record in records:
            caption = record.annotations.get("caption", "")  # demo.yaml trains captions
            writer.writerow([record.id, record.label, record.event_time, "", caption, "", "clear"])
    return records


def test_own_data_to_answers(tmp_path, tiny_kit, synthetic_manifest, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    own, run = tmp_path / "own", tmp_path / "runs" / "own1"
    assert main(["data", "init", "--source", "private", str(own)]) == 0
    records = _own_data(own, synthetic_manifest)
    manifest = own / "manifest.jsonl"
    assert (
        main(["data", "prepare", "--source", "private", "--root", str(own), "--out", str(manifest)])
        == 0
    )
    prepared = load_manifest(manifest)
    splits = {s: sum(r.split == s for r in prepared) for s in ("train", "val", "test")}
    assert len(prepared) == len(records) == 9 and min(splits.values()) >= 1

    config = ["--config", str(EXPERIMENTS / "demo.yaml"), f"--data.manifest={manifest}"]
    assert main(["data", "validate", *config]) == 0

    fast = [
        f"--model.model_path={tiny_kit}", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    assert main(["fit", *config, *fast, "--run", str(run)]) == 0
    log_dir = run / "tensorboard" / "version_0"
    last = log_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert (
        main(["test", "--run", str(run), "--ckpt", "last", "--trainer.limit_test_batches=1"]) == 0
    )
    test_eval = json.loads((log_dir / "metrics.json").read_text())
    assert test_eval["split"] == "test" and test_eval["scalars"]["items"] > 0

    export = run / "export"
    assert main(["export", "--checkpoint", str(last), "--out", str(export)]) == 0
    window = read_training_record(export / "merged").window
    assert (window.fps, window.width, window.height) == (3.0, 112, 56)  # demo.yaml
    capsys.readouterr()
    clip = next(r for r in prepared if r.split == "test")
    code = main(["infer", "--model", str(export / "merged"), "--video", str(clip.path("video")),
                 "--imu", str(clip.path("imu")), "--max-new-tokens", "4", "--json"])  # fmt: skip
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["window"]["width"] == 112 and answer["window"]["fps"] == 3.0  # as trained
    assert answer["event_time_source"] == "manifest" or answer["event_time_source"] == "imu"

    predict = ["predict", "--run", str(run), "--ckpt", "last", "--trainer.limit_predict_batches=1"]
    assert main(predict) == 0
    lines = (log_dir / "predictions.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert lines and {"id", "label", "prediction", "parsed", "valid", "option_probs"} <= set(first)
