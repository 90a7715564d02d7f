"""`sce data cache`: fills exactly the cache entries training reads, counts failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sce.cli import main


def _config(tmp_path: Path, manifest: Path, tiny_kit: Path, **data) -> Path:
    config = {
        "model": {"model_path": str(tiny_kit)},
        "data": {
            "manifest": str(manifest),
            "window": {"width": 64, "height": 36},
            "eval_imu": ["on", "off"],  # two items per window at evaluation: decoded once
            "cache_dir": str(tmp_path / "frames"),
            **data,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_prefill_fills_what_training_reads(
    tmp_path: Path, synthetic_manifest: Path, tiny_kit: Path, capsys, monkeypatch
) -> None:
    from sce.data import imu as imu_lib
    from sce.data import video as video_lib
    from sce.train.prefill import datamodule_from_config

    config = _config(tmp_path, synthetic_manifest, tiny_kit)
    assert main(["data", "cache", "--config", str(config), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    for line in ("train: 3 decoded", "val: 3 decoded", "test: 3 decoded"):
        assert line in out
    assert main(["data", "cache", "--config", str(config), "--workers", "0"]) == 0
    assert "val: 0 decoded, 3 already cached, 0 failed" in capsys.readouterr().out

    # Training's datamodule now finds every item in the cache: no video or IMU file is read.
    def refuse(*_args, **_kwargs):
        raise AssertionError("prefilled windows must not be decoded again")

    for module, name in [(video_lib, "read_frames"), (video_lib, "video_info")]:
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(imu_lib, "load_imu", refuse)
    data = datamodule_from_config(yaml.safe_load(config.read_text()), str(config))
    data.setup("fit")
    for split in ("train", "val"):
        dataset = data.dataset(split)
        samples = [dataset[i] for i in range(len(dataset))]
        assert len(samples) == (3 if split == "train" else 6)
        assert dataset.cache.misses == 0 and dataset.cache.hits == 2 * len(samples)


def test_prefill_counts_and_names_failed_samples(
    tmp_path: Path, synthetic_manifest: Path, tiny_kit: Path, capsys
) -> None:
    folder = tmp_path / "data"
    shutil.copytree(synthetic_manifest.parent, folder)
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    broken = next(r for r in records if r["split"] == "val")
    (folder / broken["video"]).write_bytes(b"not a video")
    config = _config(tmp_path, folder / "manifest.jsonl", tiny_kit)
    assert (
        main(["data", "cache", "--config", str(config), "--splits", "val", "--workers", "1"]) == 1
    )
    out = capsys.readouterr().out
    assert "val: 2 decoded, 0 already cached, 1 failed" in out
    assert f"{broken['id']}: sample {broken['id']!r}" in out and "unreadable" in out


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cache_dir": None}, "field 'data.cache_dir' is not set"),
        ({"frame_rate": 3}, "does not accept option 'frame_rate'"),
    ],
)
def test_prefill_config_errors_name_the_field(
    tmp_path: Path, synthetic_manifest: Path, tiny_kit: Path, capsys, data, message
) -> None:
    config = _config(tmp_path, synthetic_manifest, tiny_kit, **data)
    assert main(["data", "cache", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert message in out and str(config) in out
