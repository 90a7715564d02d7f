"""`sce demo`: the whole pipeline on synthetic dashcam data and the tiny offline model, on a CPU.

Stages (all through the same DataModule, LightningModule and callbacks as real runs):

1. synthetic clips with IMU/GPS and a manifest (`sce synth`);
2. the tiny Qwen2.5-VL kit with random weights (`sce tiny-model`), evaluated as is: "untrained";
3. warm-up: the tiny base is fully trained on synthetic captions. A real run starts from a
   pretrained VLM that already reads text; a random tiny model does not, and this short stage
   stands in for that pretraining (it sees captions only, never the event question);
4. the recipe: the warmed-up base trained on the 3-way event question and captions with IMU
   dropout 0.5 (paper 000's prompts), the language model fully trained and the vision tower
   frozen (papers 001/003), then evaluated on held-out clips with IMU and video only (paper 000
   Table V): "trained";
5. the flagship recipe, DoRA adapters on the same frozen warmed-up base (merged before
   evaluation): "dora" (`adapter=""` skips it).

The warm-up validates every epoch (its caption loss, `val/loss` in TensorBoard); the recipes
every `val_generation_every` epochs, their event-question `val/loss` and answers generated on the
validation clips (`val_gen_imu/imu_on/acc`, `val_gen_imu/imu_off/acc`, ...).

Writes `<out>/metrics.json` (every evaluation), TensorBoard logs under `<out>/tensorboard`, the
model folders, and prints a table of per-class precision/recall/F1 and accuracy, untrained vs
DoRA vs full fine-tuning, each with IMU and video only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from sce.common.versions import unlocked_warning
from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.data.schema import LABELS
from sce.evaluate.callback import GenerationEvaluation
from sce.evaluate.figures import compact_table
from sce.evaluate.summary import json_safe
from sce.models.adapters import LM_PROJECTIONS, TOKEN_LAYERS
from sce.models.module import SceModule
from sce.tasks import CAPTION, MCQ, VQA
from sce.train.record import training_record, write_training_record


@dataclass
class DemoConfig:
    clips: int = 240
    seed: int = 0
    clip_seconds: float = 8.0
    video_size: tuple[int, int] = (224, 128)
    frame_size: tuple[int, int] = (112, 56)
    warmup_epochs: int = 10
    recipe_epochs: int = 30
    batch_size: int = 8
    warmup_lr: float = 2e-3
    # Warm-up task mix. {"caption": 1.0} is the demo's default; adding "vqa" also asks the
    # generic and read-back questions of sce.prepare.generic_questions (never the event), tried as a
    # richer stand-in for pretraining (README, "DoRA on the tiny base").
    warmup_task_weights: dict[str, float] = field(default_factory=lambda: {CAPTION.name: 1.0})
    # The language model is fully trained, vision frozen (papers 001/003): the "trained" row.
    finetuning: str = "full"
    recipe_lr: float = 2e-3
    # The flagship recipe, DoRA adapters on the frozen warmed-up base, trained from the same
    # base as the "trained" row: the "dora" row ("" skips it). Its targets add the token layers
    # to paper 000's decoder projections: the random base never trained the rows of the answer
    # words, and frozen they kept every adapter at chance (README, "DoRA on the tiny base").
    adapter: Literal["dora", "lora", ""] = "dora"
    adapter_targets: tuple[str, ...] = (*LM_PROJECTIONS, *TOKEN_LAYERS)
    adapter_epochs: int = 30
    adapter_lr: float = 5e-3
    rank: int = 16
    # Validation of the recipes every n epochs: event-question loss and answers generated on the
    # validation clips with both IMU settings (the val/loss and val_gen/* curves). The warm-up
    # validates its caption loss every epoch.
    val_generation_every: int = 5


def tiny_datamodule(
    manifest: Path,
    model_dir: Path,
    frame_size: tuple[int, int],
    batch_size: int,
    seed: int,
    window: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> SceDataModule:
    """The data of an in-process CPU run on the tiny kit (`sce demo`, `make ablations`'
    warm-up): `tiny_data_settings` read by `model_dir`'s processor; `window` holds further
    data.window settings (e.g. {"fps": 15.0})."""
    settings = tiny_data_settings(manifest, frame_size, batch_size, seed, window, **kwargs)
    settings["window"] = WindowSpec(**settings["window"])
    return SceDataModule(processor_path=str(model_dir), **settings)


def tiny_data_settings(
    manifest: Path,
    frame_size: tuple[int, int],
    batch_size: int,
    seed: int,
    window: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """SceDataModule settings of a CPU run on the tiny kit: frames decoded at `frame_size`
    (width, height) and cached beside the manifest (every stage re-reads the same windows; a
    demo DoRA recipe epoch: 10.9 s decoding each time, 7.2 s from the cache, the same frames), a
    2048-token limit, evaluation batches of 12; `window` holds further data.window settings,
    kwargs further SceDataModule settings."""
    kwargs.setdefault("cache_dir", str(Path(manifest).parent / "frame_cache"))
    width, height = frame_size
    return {
        "manifest": str(manifest),
        "window": {"width": width, "height": height, **(window or {})},
        "batch_size": batch_size,
        "eval_batch_size": 12,
        "max_length": 2048,
        "seed": seed,
        **kwargs,
    }


def _datamodule(manifest: Path, model_dir: Path, cfg: DemoConfig, **kwargs: Any) -> SceDataModule:
    return tiny_datamodule(manifest, model_dir, cfg.frame_size, cfg.batch_size, cfg.seed, **kwargs)


class EpochLines(L.Callback):
    """One flushed line per training epoch (stage, epoch, losses, seconds), so the demo's
    progress reads the same in a terminal and in a log file, where tqdm's bars stay silent."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.started = time.time()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.time()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        parts = [f"[demo] {self.stage}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        parts += [
            f"{k} {float(metrics[k]):.3f}" for k in ("train/loss_epoch", "val/loss") if k in metrics
        ]
        print(", ".join([*parts, f"{time.time() - self.started:.0f} s"]), flush=True)


def stage_line(text: str) -> None:
    """A demo stage's header, flushed at once (the stages run for minutes)."""
    print(f"[demo] {text}", flush=True)


def _trainer(
    out: Path, name: str, epochs: int, callbacks: list, validate: bool = False, val_every: int = 1
) -> L.Trainer:
    from lightning.pytorch.loggers import TensorBoardLogger

    return L.Trainer(
        default_root_dir=str(out),
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(
            str(out / "tensorboard"), name=name, version="", default_hp_metric=False
        ),
        callbacks=[*callbacks, EpochLines(name)],
        use_distributed_sampler=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=5,
        limit_val_batches=None if validate else 0,
        check_val_every_n_epoch=val_every,
        enable_model_summary=False,
    )


# Every evaluation asks each held-out clip twice: with IMU and video only (paper 000 Table V).
EVAL_IMU = ("on", "off")


def evaluate(model_dir: Path, manifest: Path, out: Path, name: str, cfg: DemoConfig) -> dict:
    """Generation-based test metrics of a model folder, with IMU and video only."""
    module = SceModule(str(model_dir), finetuning="none", max_new_tokens=8)
    data = _datamodule(manifest, model_dir, cfg, eval_imu=EVAL_IMU)
    evaluation = GenerationEvaluation(every_n_epochs=0, max_samples=None)
    _trainer(out, name, 1, [evaluation]).test(module, datamodule=data, verbose=False)
    return evaluation.last["test"].to_json()


def warm_up(base_dir: Path, manifest: Path, out: Path, cfg: DemoConfig) -> Path:
    """Full fine-tuning on `cfg.warmup_task_weights` (captions, optionally the generic
    questions), never the event question; saves the warmed-up model as a new base folder."""
    if VQA.name in cfg.warmup_task_weights:
        from sce.prepare.generic_questions import pretraining_manifest

        manifest = pretraining_manifest(manifest, manifest.parent / "pretraining_manifest.jsonl")
    module = SceModule(str(base_dir), finetuning="full", lr=cfg.warmup_lr, scheduler="cosine")
    data = _datamodule(
        manifest,
        base_dir,
        cfg,
        task_weights=dict(cfg.warmup_task_weights),
        imu_dropout=0.5,
        eval_tasks=(CAPTION.name,),  # val/loss: the caption loss this stage trains
    )
    trainer = _trainer(out, "warmup", cfg.warmup_epochs, [], validate=True)
    trainer.fit(module, datamodule=data)
    warm_dir = out / "model_warm"
    module.model.save_pretrained(warm_dir)
    data.processor.save_pretrained(warm_dir)
    return warm_dir


def train_recipe(
    base_dir: Path, manifest: Path, out: Path, cfg: DemoConfig, name: str = "recipe"
) -> tuple[SceModule, SceDataModule]:
    """The event recipe at tiny scale: event question + captions, IMU dropout 0.5 (paper 000),
    fine-tuned as `cfg.finetuning`; TensorBoard curves under `<out>/tensorboard/<name>`."""
    module = SceModule(
        str(base_dir),
        finetuning=cfg.finetuning,
        rank=cfg.rank,
        alpha=2 * cfg.rank,
        targets="all" if cfg.finetuning == "full" else list(cfg.adapter_targets),
        lr=cfg.recipe_lr,
        scheduler="cosine",
        warmup_ratio=0.05,
        max_new_tokens=8,
    )
    # items per record and epoch: one per clip on average, 4 event questions to 1 caption
    data = _datamodule(
        manifest,
        base_dir,
        cfg,
        task_weights={MCQ.name: 0.8, CAPTION.name: 0.2},
        imu_dropout=0.5,
        eval_imu=EVAL_IMU,
    )
    curves = GenerationEvaluation(every_n_epochs=cfg.val_generation_every, max_samples=None)
    # Validation (loss and generated answers) every val_generation_every epochs: every epoch
    # cost 62 s of the demo's 10 minutes over both recipes (522.4 s vs 460.8 s). Training does
    # not depend on it (validation draws nothing from the global RNG; same printed table).
    every = cfg.val_generation_every
    trainer = _trainer(out, name, cfg.recipe_epochs, [curves], validate=True, val_every=every)
    trainer.fit(module, datamodule=data)
    return module, data


def export_recipe(module: SceModule, data: SceDataModule, out: Path, name: str) -> Path:
    """Save a trained recipe as a model folder `<out>/<name>` that `from_pretrained` and
    `sce infer` load (processor and `sce_training.json` included); adapters are also kept
    unmerged in `<out>/<name>_adapter`, then merged into the folder."""
    model = module.model
    record = training_record(data.hparams)  # the window and tasks sce infer uses
    if hasattr(model, "merge_and_unload"):
        model.save_pretrained(out / f"{name}_adapter")
        write_training_record(out / f"{name}_adapter", record)
        model = model.merge_and_unload()
    model_dir = out / name
    model.save_pretrained(model_dir)
    data._load_processor().save_pretrained(model_dir)  # the one the recipe trained with
    write_training_record(model_dir, record)
    return model_dir


def adapter_config(cfg: DemoConfig) -> DemoConfig:
    """The recipe settings of the adapter row: `cfg.adapter` at its own epochs and lr."""
    return replace(
        cfg, finetuning=cfg.adapter, recipe_epochs=cfg.adapter_epochs, recipe_lr=cfg.adapter_lr
    )


def run_demo(
    out_dir: str | Path = "runs/demo", clips: int = 240, seed: int = 0, **overrides
) -> dict:
    """Run every stage and return {"untrained": metrics, "trained": metrics (full FT),
    "dora": metrics (the `cfg.adapter` row, unless adapter=""), "seconds": float}.

    `overrides` set DemoConfig fields (e.g. recipe_epochs=10, adapter="lora")."""
    from sce.models.tiny import build_tiny_kit
    from sce.prepare.synthetic import generate_synthetic_dataset

    start = time.time()
    cfg = DemoConfig(clips=clips, seed=seed, **overrides)
    unlocked = unlocked_warning()
    if unlocked:
        print(f"note: {unlocked}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    L.seed_everything(seed, workers=True)
    width, height = cfg.video_size
    stage_line(f"1/5 {cfg.clips} synthetic clips and the tiny kit into {out}")
    manifest = generate_synthetic_dataset(
        out / "data",
        clips=cfg.clips,
        seed=seed,
        duration=cfg.clip_seconds,
        width=width,
        height=height,
    )
    base_dir = build_tiny_kit(out / "model_base", seed=seed)
    stage_line("2/5 the untrained tiny kit, evaluated on the held-out clips")
    results = {"untrained": evaluate(base_dir, manifest, out, "untrained", cfg)}
    stage_line(f"3/5 warm-up: {cfg.warmup_epochs} epochs of captions (full fine-tuning)")
    warm_dir = warm_up(base_dir, manifest, out, cfg)
    stage_line(f"4/5 full FT recipe: {cfg.recipe_epochs} epochs of event question + captions")
    module, recipe_data = train_recipe(warm_dir, manifest, out, cfg)
    trained_dir = export_recipe(module, recipe_data, out, "model_trained")
    results["trained"] = evaluate(trained_dir, manifest, out, "trained", cfg)
    if cfg.adapter:
        adapter_cfg = adapter_config(cfg)
        stage_line(f"5/5 {cfg.adapter} recipe: {cfg.adapter_epochs} epochs on the warmed-up base")
        module, recipe_data = train_recipe(
            warm_dir, manifest, out, adapter_cfg, f"recipe_{cfg.adapter}"
        )
        adapter_dir = export_recipe(module, recipe_data, out, f"model_{cfg.adapter}")
        results[cfg.adapter] = evaluate(adapter_dir, manifest, out, cfg.adapter, adapter_cfg)
    results["seconds"] = round(time.time() - start, 1)
    (out / "metrics.json").write_text(json.dumps(json_safe(results), indent=2, allow_nan=False))
    print(summary_table(results))
    if unlocked:
        print(f"\nnote: {unlocked}")
    print(f"\nwrote {out / 'metrics.json'} and TensorBoard logs in {out / 'tensorboard'}")
    return results


# the compact metrics plus per-class precision and recall
SUMMARY_METRICS = ("acc", "ll/acc", "macro_f1", "binary/acc", "invalid_rate") + tuple(
    f"{m}/{label}" for label in LABELS for m in ("precision", "recall", "f1")
)


def summary_table(results: dict) -> str:
    """Per-class P/R/F1 and accuracy of the untrained model, the adapter row (when run) and the
    fully trained model, each with IMU and video only, and the fully trained model's video-only
    change vs with IMU (paper 000 Table V), as aligned text."""
    rows = {"untrained": "untrained", "dora": "DoRA", "lora": "LoRA", "trained": "full FT"}
    evaluations = {
        header: results[stage]["scalars"] for stage, header in rows.items() if stage in results
    }
    header = (
        "sce demo: held-out synthetic clips, with IMU and video only "
        f"({results.get('seconds', '?')} s)"
    )
    return header + "\n" + compact_table(evaluations, SUMMARY_METRICS)
