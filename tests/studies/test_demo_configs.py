"""The demo's stages as configs (issue 27, "own data that learns"): experiments/demo_warmup.yaml,
demo_full.yaml and demo_dora.yaml hold exactly what `make demo` passes to its model, data and
trainer, so a researcher can rerun a stage, or train on own data from the warmed-up base, with
`sce fit`. The stages run here with recorders in place of training."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from helpers.paths import EXPERIMENTS

from sce.studies import demo
from sce.studies.demo import DemoConfig, adapter_config, tiny_data_settings


class Recorded:
    """What one stage passed to SceModule, the data module and the trainer."""

    def __init__(self) -> None:
        self.model: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.trainer: dict[str, Any] = {}


def _record_stage(monkeypatch: pytest.MonkeyPatch, run) -> Recorded:
    seen = Recorded()

    def module(model_path: str, **kwargs: Any) -> mock.MagicMock:
        seen.model = {"model_path": model_path, **kwargs}
        return mock.MagicMock()

    def datamodule(manifest: Path, model_dir: Path, cfg: DemoConfig, **kwargs: Any):
        settings = tiny_data_settings(manifest, cfg.frame_size, cfg.batch_size, cfg.seed, **kwargs)
        seen.data = {k: v for k, v in settings.items() if k not in ("manifest", "cache_dir")}
        return mock.MagicMock()

    def trainer(out, name, epochs, callbacks, validate=False, val_every=1):
        seen.trainer = {"max_epochs": epochs, "check_val_every_n_epoch": val_every}
        seen.trainer["callbacks"] = [(type(c).__name__, c.every_n_epochs) for c in callbacks]
        return mock.MagicMock()

    monkeypatch.setattr(demo, "SceModule", module)
    monkeypatch.setattr(demo, "_datamodule", datamodule)
    monkeypatch.setattr(demo, "_trainer", trainer)
    run()
    return seen


def _config(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXPERIMENTS / name).read_text())


def _model_section(config: dict, seen: Recorded) -> dict[str, Any]:
    """The config's model keys the stage set, with the stage's values for comparison."""
    expected = {k: seen.model[k] for k in config["model"] if k in seen.model}
    if isinstance(expected.get("targets"), list | tuple):
        expected["targets"] = list(expected["targets"])
    return expected


def _assert_config_is_stage(config: dict, seen: Recorded) -> None:
    model = dict(config["model"])
    model.pop("max_new_tokens", None)  # generation length: set where the stage evaluates
    assert {k: model[k] for k in model if k != "model_path"} == {
        k: v for k, v in _model_section(config, seen).items() if k in model and k != "model_path"
    }
    assert set(seen.model) - {"model_path", "max_new_tokens"} <= set(model)
    data = dict(config["data"])
    assert data.pop("window") == seen.data.pop("window")
    assert data.pop("manifest") == "synthetic:240:0"
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in seen.data.items()} == data
    for key, value in seen.trainer.items():
        if key != "callbacks":
            assert config["trainer"][key] == value, key


def test_the_warm_up_config_is_the_demo_warm_up(monkeypatch, tmp_path: Path) -> None:
    cfg = DemoConfig()
    seen = _record_stage(
        monkeypatch, lambda: demo.warm_up(tmp_path, tmp_path / "m.jsonl", tmp_path, cfg)
    )
    config = _config("demo_warmup.yaml")
    _assert_config_is_stage(config, seen)
    assert config["model"]["model_path"] == f"tiny:{cfg.seed}" and config["seed_everything"] == 0
    assert config["data"]["task_weights"] == {"caption": 1.0}


@pytest.mark.parametrize("row", ["full", "dora"])
def test_each_recipe_config_is_the_demo_recipe(monkeypatch, tmp_path: Path, row: str) -> None:
    cfg = DemoConfig() if row == "full" else adapter_config(DemoConfig())
    seen = _record_stage(
        monkeypatch, lambda: demo.train_recipe(tmp_path, tmp_path / "m", tmp_path, cfg)
    )
    config = _config(f"demo_{row}.yaml")
    _assert_config_is_stage(config, seen)
    # starts from the warmed-up base `make demo` writes, evaluates as the demo's curves do
    assert config["model"]["model_path"] == "runs/demo/model_warm"
    evaluation = config["trainer"]["callbacks"][0]
    assert evaluation["class_path"].endswith("GenerationEvaluation")
    assert ("GenerationEvaluation", evaluation["init_args"]["every_n_epochs"]) in seen.trainer[
        "callbacks"
    ]
    assert config["model"]["finetuning"] == {"full": "full", "dora": "dora"}[row]
