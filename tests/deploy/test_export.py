"""sce export: adapter checkpoint -> PEFT adapter folder + merged model folder (same logits)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from sce.cli import main
from sce.data.channels import TelemetryChannel
from sce.data.clip import WindowSpec
from sce.data.collate import Collator
from sce.data.datamodule import SceDataModule
from sce.data.dataset import Sample
from sce.data.prompts import build_user_content
from sce.deploy.export import NON_LORA_FILE, module_from_checkpoint, read_checkpoint
from sce.deploy.infer import attach_adapter
from sce.models.checkpointing import CheckpointMismatchError, adapter_only
from sce.models.losses import model_inputs
from sce.models.module import SceModule
from sce.tasks.events import EVENT_QUESTION
from sce.train.record import read_training_record


def load_model(path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path).eval()


@pytest.fixture(scope="module")
def checkpoint(tiny_kit: Path, synthetic_manifest: Path, tmp_path_factory) -> Path:
    """A real Lightning checkpoint after 2 DoRA steps (large lr: adapters far from identity)."""
    root = tmp_path_factory.mktemp("export_ckpt")
    L.seed_everything(0)
    data = SceDataModule(
        str(synthetic_manifest), str(tiny_kit), window=WindowSpec(fps=1, before=2, after=2, width=112, height=56),
        batch_size=2, task_weights={"mcq": 1}, imu_dropout=0.0,
    )  # fmt: skip
    module = SceModule(str(tiny_kit), finetuning="dora", rank=4, alpha=8, lr=2e-2)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root),
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    path = root / "dora.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def video_batch(tiny_processor):
    """A training-style batch: two 2-frame videos, text, answer."""
    frames = np.random.default_rng(0).integers(0, 256, (4, 56, 112, 3), dtype=np.uint8)
    content, videos = build_user_content(
        frames, np.array([0.25, 0.75, 1.25, 1.75]), [TelemetryChannel(None)], EVENT_QUESTION
    )
    sample = Sample("x", content, videos, 2.0, "B. near-collision", "mcq", "near_collision")
    batch = Collator(tiny_processor, mode="train")([sample])
    assert batch["pixel_values_videos"].shape[0] > 0
    return batch


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**model_inputs(batch, model.config)).logits


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "out"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return out


def test_export_writes_adapter_merged_and_info(exported: Path, checkpoint: Path, tiny_kit: Path):
    from transformers import AutoProcessor

    info = json.loads((exported / "export.json").read_text())
    assert info["finetuning"] == "dora" and info["global_step"] == 2
    assert info["base_model"] == str(tiny_kit)
    assert (exported / "adapter" / "adapter_config.json").is_file()
    assert not (exported / "adapter" / NON_LORA_FILE).exists()  # vision/merger stayed frozen
    config = json.loads((exported / "adapter" / "adapter_config.json").read_text())
    assert config["use_dora"] is True and config["r"] == 4
    assert AutoProcessor.from_pretrained(exported / "merged").tokenizer is not None
    leftovers = [p.name for p in exported.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temporary folders renamed or removed


def test_export_records_the_training_window_in_both_model_folders(exported: Path):
    # the checkpoint fixture's data: fps=1, before=2, after=2, 112x56, task_weights {"mcq": 1}
    for folder in ("merged", "adapter"):
        record = read_training_record(exported / folder)
        window = record.window  # the data module's window, whole
        assert window == WindowSpec(fps=1, before=2, after=2, width=112, height=56)
        assert record.tasks == ("mcq",)
    info = json.loads((exported / "export.json").read_text())
    assert info["training_record"] == read_training_record(exported / "merged").to_json()


def test_merged_logits_equal_adapter_logits_and_visual_weights_are_the_base(
    exported: Path, tiny_kit: Path, video_batch
):
    base = load_model(tiny_kit)
    merged = load_model(exported / "merged")
    adapted = attach_adapter(load_model(tiny_kit), exported / "adapter").eval()
    merged_logits, adapter_logits = logits(merged, video_batch), logits(adapted, video_batch)
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=0, atol=1e-5)
    assert (adapter_logits - logits(base, video_batch)).abs().max() > 1e-2  # adapters matter

    base_sd, merged_sd = base.state_dict(), merged.state_dict()
    assert set(merged_sd) == set(base_sd)  # no LoRA leftovers, nothing missing
    visual = [k for k in base_sd if ".visual." in f".{k}"]
    assert any(".merger." in k for k in visual) and any(".blocks." in k for k in visual)
    for name in visual:
        torch.testing.assert_close(merged_sd[name], base_sd[name], rtol=0, atol=0)
    changed = [k for k in base_sd if not torch.equal(merged_sd[k], base_sd[k])]
    assert changed and all("language_model.layers" in k for k in changed)


def test_module_from_checkpoint_restores_the_trained_adapters(checkpoint: Path, video_batch):
    ckpt = read_checkpoint(checkpoint)
    module = module_from_checkpoint(ckpt)
    for name, value in ckpt["state_dict"].items():
        torch.testing.assert_close(module.get_parameter(name), value, rtol=0, atol=0)
    assert module.hparams.neftune_alpha == 0.0


def test_export_refuses_mismatch_existing_output_and_missing_file(
    checkpoint: Path, tmp_path: Path, capsys
):
    ckpt = read_checkpoint(checkpoint)
    ckpt["hyper_parameters"]["targets"] = "qv"
    with pytest.raises(CheckpointMismatchError, match="parameters the model lacks"):
        module_from_checkpoint(ckpt)
    out = tmp_path / "out"
    (out / "adapter").mkdir(parents=True)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(tmp_path / "no.ckpt"), "--out", str(out)]) == 2
    assert "--checkpoint: file not found" in capsys.readouterr().out


def test_trained_merger_goes_to_both_folders(tiny_kit: Path, tmp_path: Path, video_batch):
    """Non-adapter trainable weights (here the merger) are merged and saved next to the adapter."""
    torch.manual_seed(0)
    module = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8, train_merger=True)
    module.configure_model()
    with torch.no_grad():
        for param in module.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    ckpt = {
        "hyper_parameters": dict(module.hparams),
        "state_dict": adapter_only(module, module.state_dict()),
        "global_step": 7,
    }
    torch.save(ckpt, tmp_path / "merger.ckpt")
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(tmp_path / "merger.ckpt"), "--out", str(out)]) == 0
    assert (out / "adapter" / NON_LORA_FILE).is_file()
    merged = load_model(out / "merged")
    trained = {
        n.removeprefix("model.base_model.model."): p
        for n, p in module.named_parameters()
        if ".merger." in n
    }
    assert trained
    for name, value in trained.items():
        torch.testing.assert_close(merged.get_parameter(name), value.detach(), rtol=0, atol=0)
    adapted = attach_adapter(load_model(tiny_kit), out / "adapter").eval()
    torch.testing.assert_close(
        logits(merged, video_batch), logits(adapted, video_batch), rtol=0, atol=1e-5
    )


# ---------------------------------------------- issue 26.2: export onto the base it was trained on
@pytest.fixture(scope="module")
def other_kit(tmp_path_factory) -> Path:
    """A second tiny kit: the same architecture and config as tiny_kit, other weights (seed 1)."""
    from sce.models.tiny import build_tiny_kit

    return build_tiny_kit(tmp_path_factory.mktemp("tiny_seed1"), seed=1)


def test_export_refuses_another_or_a_moved_base_naming_model_path(
    checkpoint: Path, exported: Path, tiny_kit: Path, other_kit: Path, tmp_path: Path, capsys
):
    """The issue's probe: another model put at model.model_path after training was merged
    onto (rc 0, merged weights off by up to 0.135), and a base that moved away gave a
    transformers traceback. Both are refused with exit 2 and a message naming --model-path;
    naming the right base with --model-path exports what the original base did."""
    import shutil

    from safetensors.torch import load_file

    from sce.models.base_identity import BASE_IDENTITY_KEY

    base = tmp_path / "base"
    shutil.copytree(tiny_kit, base)
    ckpt = read_checkpoint(checkpoint)
    assert ckpt[BASE_IDENTITY_KEY]["weight_files"] == 1  # recorded by SceModule at fit
    ckpt["hyper_parameters"]["model_path"] = str(base)
    moved = tmp_path / "trained_on_base.ckpt"
    torch.save(ckpt, moved)
    export = ["export", "--checkpoint", str(moved)]

    shutil.rmtree(base)
    shutil.copytree(other_kit, base)  # another model now sits at the base path
    assert main([*export, "--out", str(tmp_path / "wrong")]) == 2
    message = capsys.readouterr().out
    assert f"the base model at --model-path {base} is not the one it was trained on" in message
    assert "(weights differ:" in message and "config.json" not in message  # same config
    assert not (tmp_path / "wrong").exists()

    shutil.rmtree(base)  # the base moved away
    assert main([*export, "--out", str(tmp_path / "moved")]) == 2
    message = capsys.readouterr().out
    assert f"its base model is not at --model-path {base} (no model folder there" in message
    assert "Traceback" not in message and not (tmp_path / "moved").exists()

    assert main([*export, "--out", str(tmp_path / "right"), "--model-path", str(tiny_kit)]) == 0
    right = load_file(tmp_path / "right" / "merged" / "model.safetensors")
    original = load_file(exported / "merged" / "model.safetensors")
    assert right.keys() == original.keys()
    assert all(torch.equal(right[k], original[k]) for k in right)
