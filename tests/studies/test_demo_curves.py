"""The demo's curves and its with-IMU / video-only table (issue 12 point 5), at tiny scale."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sce.studies.demo import DemoConfig, adapter_config, export_recipe, summary_table, train_recipe


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_recipe_stage_logs_validation_loss_and_generation_curves(
    tmp_path, tiny_kit, synthetic_manifest
):
    cfg = DemoConfig(recipe_epochs=2, val_generation_every=1, frame_size=(56, 56), batch_size=3)
    train_recipe(tiny_kit, synthetic_manifest, tmp_path, cfg)
    scalars = _scalars(tmp_path / "tensorboard" / "recipe")
    # one validation loss point per epoch, and one generation evaluation per epoch, with IMU
    # and video only (9 clips: 3 per class, 60/20/20 split: 3 validation clips)
    assert len(scalars["val/loss"]) == 2
    for setting in ("on", "off"):
        points = scalars[f"val_gen_imu/imu_{setting}/acc"]
        assert len(points) == 2
        assert [n for _, n in scalars[f"val_gen_imu/imu_{setting}/n"]] == [3.0, 3.0]


def _result(on: float, off: float) -> dict:
    keys = {"acc": 1.0, "ll/acc": 1.0, "binary/acc": 1.0}
    scalars = {}
    for key, scale in keys.items():
        head, _, rest = key.partition("/")
        for imu, value in (("on", on), ("off", off)):
            name = f"ll/imu_{imu}/{rest}" if head == "ll" else f"imu_{imu}/{key}"
            scalars[name] = value * scale
    return {"scalars": scalars}


def test_summary_table_prints_both_imu_settings_and_the_video_only_change():
    table = summary_table(
        {
            "untrained": _result(0.0, 0.0),
            "trained": _result(0.877, 0.745),
            "dora": _result(0.5, 0.4),
            "seconds": 1.0,
        }
    )
    header, columns, rule, *rows = table.splitlines()
    assert set(rule) == {"-", " "}
    # DoRA beside full fine-tuning; the change column is the full fine-tuning's (last column)
    assert columns.split() == [
        "metric", "untrained", "IMU", "untrained", "video", "DoRA", "IMU", "DoRA", "video",
        "full", "FT", "IMU", "full", "FT", "video", "video", "-", "IMU",
    ]  # fmt: skip
    acc = next(r for r in rows if r.split()[0] == "acc").split()
    assert acc[1:] == ["0.000", "0.000", "0.500", "0.400", "0.877", "0.745", "-0.132"]
    ll_acc = next(r for r in rows if r.split()[0] == "ll/acc").split()
    assert ll_acc[5:] == ["0.877", "0.745", "-0.132"]
    macro = next(r for r in rows if r.split()[0] == "macro_f1").split()
    assert macro[1:] == ["-"] * 7  # not in the results: shown as missing, never as 0


def test_adapter_row_trains_dora_on_the_frozen_base_and_exports_a_merged_folder(
    tmp_path, tiny_kit, synthetic_manifest
):
    import json

    import torch
    from transformers import AutoModelForImageTextToText

    cfg = adapter_config(
        DemoConfig(adapter_epochs=1, adapter_lr=1e-2, frame_size=(56, 56), batch_size=3)
    )
    assert (cfg.finetuning, cfg.recipe_epochs, cfg.recipe_lr) == ("dora", 1, 1e-2)
    module, data = train_recipe(tiny_kit, synthetic_manifest, tmp_path, cfg, "recipe_dora")
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)  # the base stays frozen
    model_dir = export_recipe(module, data, tmp_path, "model_dora")
    adapter_dir = tmp_path / "model_dora_adapter"
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["use_dora"] is True
    assert json.loads((model_dir / "sce_training.json").read_text())
    assert (tmp_path / "tensorboard" / "recipe_dora").is_dir()
    # the merged folder loads as a plain model whose weights carry the trained adapters
    merged = dict(AutoModelForImageTextToText.from_pretrained(model_dir).named_parameters())
    base = dict(AutoModelForImageTextToText.from_pretrained(tiny_kit).named_parameters())
    assert merged.keys() == base.keys()  # no lora_* names left
    changed = {n for n in base if not torch.equal(merged[n], base[n])}
    # the decoder projections and the token layers (DoRA row's targets), never the vision side
    assert {"lm_head.weight", "model.language_model.embed_tokens.weight"} <= changed
    assert all(
        n.endswith("_proj.weight") and ".language_model.layers." in n
        for n in changed - {"lm_head.weight", "model.language_model.embed_tokens.weight"}
    )
