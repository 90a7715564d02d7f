"""Every experiment YAML parses and trains one step on the tiny model on CPU.

Overrides replace only what the test machine cannot have: the model (tiny kit), the data
(synthetic clips), the hardware (CPU, one device, fp32, no 4-bit) and the frame size.
"""

from __future__ import annotations

import pytest
import yaml
from helpers.paths import REPO

from sce.cli import run_lightning_cli
from sce.data.clip import WindowSpec

EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("cache")
    monkeypatch_module.setenv("SCE_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_every_recipe_has_a_config():
    names = {p.stem for p in EXPERIMENTS}
    for prefix in ("demo", "paper000", "paper001", "paper002", "paper003"):
        assert any(n.startswith(prefix) for n in names), f"no experiments/{prefix}*.yaml"


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_config_header_names_command_and_hardware(config):
    header = [line for line in config.read_text().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert "Command:" in text and "sce fit --config experiments/" in text
    assert "Hardware:" in text
    assert {"model", "data", "trainer"} <= set(yaml.safe_load(config.read_text()))


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_config_trains_one_step_on_tiny_model(config, cache, tmp_path):
    cfg = yaml.safe_load(config.read_text())
    finetuning = cfg["model"].get("finetuning", "dora")
    args = [
        "fit",
        "--config",
        str(config),
        "--model.model_path=tiny:0",
        "--data.manifest=synthetic:9:0",
        f"--model.finetuning={'lora' if finetuning == 'qlora' else finetuning}",
        "--model.dtype=float32",
        "--model.attn_implementation=sdpa",
        "--data.window.width=112",
        "--data.window.height=56",
        "--data.num_workers=0",
        "--data.cache_dir=null",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.strategy=auto",
        "--trainer.precision=32-true",
        "--trainer.fast_dev_run=1",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    cli = run_lightning_cli(args)
    assert cli.trainer.global_step == 1
    trained = [n for n, p in cli.model.model.named_parameters() if p.requires_grad]
    assert trained and not any(".visual." in f".{n}" for n in trained)
    window = cfg["data"].get("window", {})  # the data module's window, as the config writes it
    assert cli.datamodule.window == WindowSpec(**{**window, "width": 112, "height": 56})
    assert cli.datamodule.hparams.window == cli.datamodule.window.settings()  # as checkpointed
    if window.get("scales"):  # paper 002: each item's 3 keyframes are 3 images
        batch = next(iter(cli.datamodule.train_dataloader()))
        assert "pixel_values_videos" not in batch and "video_grid_thw" not in batch
        assert len(batch["image_grid_thw"]) == 3 * len(batch["input_ids"])
        assert (batch["image_grid_thw"][:, 0] == 1).all()  # one temporal patch per image
