"""`python -m sce.studies.ablations` (`make ablations`): three of the papers' ablation directions on
synthetic data and the tiny kit, on a CPU, with several seeds (issue 17).

- imu_dropout (paper 000 Table V): telemetry-decides clips (near-collisions look like normal
  driving; only the IMU shows the hard braking). Trained with IMU dropout 0.5 and without;
  each evaluated with IMU and video only. Expected: IMU helps; dropout keeps video-only usable.
- balancing (paper 001 Table 7): a long-tail train split (2% collision, 15% near-collision;
  val balanced), trained unbalanced and up-sampled (collision x15, near-collision x2 event
  questions, paper 001's factors). Expected: collision F1 near 0 unbalanced, above balanced.
- fps (paper 001 Table 3): brief impacts (visible 0.3 s) sampled at 1, 3 and 15 fps. Trained
  and evaluated video only (IMU dropout 1.0), so that the frames alone must show the impact
  (sce's reading: paper 001 trains with telemetry, but then the IMU spike would decide every
  clip whatever the frame rate). Expected: accuracy rises with fps.

Every direction: one synthetic dataset (data seed 0) and one caption warm-up of the tiny kit
(seed 0, in process: the stand-in for pretraining, as in `sce demo`), then a sweep
(sce.studies.sweep, the mechanism of `sce sweep`): the recipe (the language model fully trained,
vision frozen) as a `sce fit` config, `<out>/<direction>/recipe.yaml`, its variants as dotted-key
overrides in `<out>/<direction>/ablation.yaml`, run once per variant and seed (`--seeds`: the
seed sets the initialisation order, the training data's order and draws (`data.seed`) and
`seed_everything`; evaluation items stay fixed) and tested on its last checkpoint (`--test
last`). So `sce sweep <out>/fps/ablation.yaml --seeds 0,1,2 --test last --out <out> --overwrite`
reruns a direction, and each run folder `<out>/<direction>/<variant>/seed<S>/` holds its
TensorBoard events, config, checkpoint, test metrics.json and sweep.log.

Writes `<out>/ablation_table.csv` and `.md`: one row per direction, variant, evaluation setting
and metric, with the mean, sample standard deviation and n over seeds, and the mean wall time of
a run (its `sce fit` and `sce test` subprocesses). `notebooks/ablations.ipynb` plots the table
when it is present.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from sce.common.known_warnings import quiet_known_noise
from sce.data.datamodule import SceDataModule
from sce.evaluate.figures import imu_setting_value
from sce.evaluate.run_folder import RunFolder
from sce.models.module import SceModule
from sce.prepare.synthetic import SynthOptions, generate_synthetic_dataset
from sce.studies.demo import tiny_data_settings, tiny_datamodule
from sce.studies.sweep import (
    LOG_NAME,
    SweepPlan,
    format_plan,
    plan_sweep,
    run_record_of,
    run_sweep,
)
from sce.tasks import CAPTION, MCQ

TABLE_COLUMNS = (
    "direction",
    "paper",
    "variant",
    "eval",
    "metric",
    "mean",
    "std",
    "n",
    "seconds",
)


@dataclass(frozen=True)
class Direction:
    """One ablation: its data, the variants' datamodule settings and the metrics it reports."""

    name: str
    paper: str
    options: SynthOptions
    variants: dict[str, dict[str, Any]]  # variant -> dotted-key overrides, as in sce sweep
    metrics: tuple[str, ...]


LONG_TAIL = {"collision": 0.02, "near_collision": 0.15, "normal": 0.83}
DIRECTIONS: dict[str, Direction] = {
    "imu_dropout": Direction(
        "imu_dropout",
        "000 Table V",
        SynthOptions(telemetry_decides=True),
        {
            "dropout0.5": {"data.imu_dropout": 0.5, "data.eval_imu": ["on", "off"]},
            "dropout0": {"data.imu_dropout": 0.0, "data.eval_imu": ["on", "off"]},
        },
        ("acc", "f1/near_collision"),
    ),
    "balancing": Direction(
        "balancing",
        "001 Table 7",
        SynthOptions(class_fractions=LONG_TAIL),
        {
            "unbalanced": {"data.class_factors": None},
            "balanced": {"data.class_factors": {MCQ.name: {"collision": 15, "near_collision": 2}}},
        },
        ("f1/collision", "acc", "macro_f1"),
    ),
    "fps": Direction(
        "fps",
        "001 Table 3",
        SynthOptions(brief_events=True),
        {
            f"fps{fps}": {
                "data.window.fps": float(fps),
                "data.imu_dropout": 1.0,
                "data.eval_imu": ["off"],
            }
            for fps in (1, 3, 15)
        },
        ("acc", "f1/collision"),
    ),
}


@dataclass
class AblationConfig:
    """Sizes of the run; the defaults are chosen so that all three directions x 3 seeds finish
    in under 60 minutes on 2 CPU cores (see the slow test for the measured reduced run)."""

    out: str = "runs/ablations"
    seeds: tuple[int, ...] = (0, 1, 2)
    directions: tuple[str, ...] = tuple(DIRECTIONS)
    variants: tuple[str, ...] | None = None  # None: all of each direction's variants
    clips: int = 120  # per direction (the long tail: see long_tail_clips)
    long_tail_clips: int = 200  # 120 train clips: 2 collisions, 18 near-collisions
    clip_seconds: float = 7.0
    video_size: tuple[int, int] = (160, 96)
    frame_size: tuple[int, int] = (112, 56)
    warmup_epochs: int = 8
    epochs: int = 24  # 8 left every variant at chance (0.25-0.33 accuracy, 13.7 min in all)
    batch_size: int = 8
    lr: float = 2e-3
    extra: dict[str, Any] = field(default_factory=dict)  # more data settings (a variant's win)


# `make ablations-quick`: every direction and variant once (seed 0) on fewer clips and epochs, a
# few minutes on 2 cores: it checks the whole path and the table, not the effects (at 8 epochs
# the full-size variants still sat at chance).
QUICK = dict(
    out="runs/ablations_quick",
    seeds=(0,),
    clips=36,
    long_tail_clips=60,
    warmup_epochs=2,
    epochs=3,
)


def _datamodule(
    manifest: Path, model_dir: Path, cfg: AblationConfig, seed: int, **kw: Any
) -> SceDataModule:
    settings = {"eval_imu": ("on",), **kw, **cfg.extra}
    return tiny_datamodule(manifest, model_dir, cfg.frame_size, cfg.batch_size, seed, **settings)


def _trainer(out: Path, epochs: int, callbacks: list) -> L.Trainer:
    return L.Trainer(
        default_root_dir=str(out),
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        callbacks=callbacks,
        use_distributed_sampler=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_model_summary=False,
        enable_progress_bar=False,
    )


def warm_up(base_dir: Path, manifest: Path, out: Path, cfg: AblationConfig) -> Path:
    """Captions only, full fine-tuning (the stand-in for pretraining, as in `sce demo`)."""
    L.seed_everything(0, workers=True)
    module = SceModule(str(base_dir), finetuning="full", lr=cfg.lr, scheduler="cosine")
    data = _datamodule(manifest, base_dir, cfg, 0, task_weights={CAPTION.name: 1.0})
    _trainer(out, cfg.warmup_epochs, []).fit(module, datamodule=data)
    warm_dir = out / "model_warm"
    module.model.save_pretrained(warm_dir)
    data.processor.save_pretrained(warm_dir)
    return warm_dir


def recipe_config(warm_dir: Path, manifest: Path, cfg: AblationConfig) -> dict[str, Any]:
    """The event recipe (LM fully trained from the warm-up) as a `sce fit` config: no
    validation during training, the test split's answers generated after it (`sce test`). The
    sweep sets each run's seed (`seed_everything`, `data.seed`) and its run folder."""
    data = {"eval_imu": ["on"], "task_weights": {MCQ.name: 0.8, CAPTION.name: 0.2}, **cfg.extra}
    evaluation = {"every_n_epochs": 0, "max_samples": None}  # at test only, every test clip
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": cfg.epochs,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
            "enable_model_summary": False,
            "enable_progress_bar": False,
            "callbacks": [
                {
                    "class_path": "sce.evaluate.callback.GenerationEvaluation",
                    "init_args": evaluation,
                }
            ],
        },
        "model": {
            "model_path": str(warm_dir),
            "finetuning": "full",
            "lr": cfg.lr,
            "scheduler": "cosine",
            "warmup_ratio": 0.05,
        },
        "data": tiny_data_settings(manifest, cfg.frame_size, cfg.batch_size, 0, **data),
    }


def plan_direction(
    direction: Direction, cfg: AblationConfig, root: Path, warm_dir: Path, manifest: Path
) -> SweepPlan:
    """The direction as a sweep: recipe.yaml and ablation.yaml in its folder, planned over
    the seeds into `<root>/<direction>/<variant>/seed<S>/`."""
    out = root / direction.name
    out.mkdir(parents=True, exist_ok=True)
    base = out / "recipe.yaml"
    base.write_text(yaml.safe_dump(recipe_config(warm_dir, manifest, cfg), sort_keys=False))
    ablation = out / "ablation.yaml"
    spec = {"base": str(base.resolve()), "name": direction.name, "variants": direction.variants}
    ablation.write_text(yaml.safe_dump(spec, sort_keys=False))
    only = [v for v in direction.variants if cfg.variants is None or v in cfg.variants]
    return plan_sweep(ablation, only=only, out=root, seeds=cfg.seeds)


def tested_runs(plan: SweepPlan, summary: Mapping[str, Any], variant: str) -> list[dict]:
    """Seed, test-split scalars and wall time of each run of a variant (its metrics.json, read
    back); a run that did not finish raises with its log."""
    entry = next(e for e in summary["variants"] if e["name"] == variant)
    runs = []
    for run in plan.runs_of(variant):
        record = run_record_of(entry, run.seed) or {}
        metrics = RunFolder(run.run_dir).metrics() if record.get("status") == "ok" else None
        if not metrics or metrics.get("split") != "test":
            raise RuntimeError(
                f"{plan.name}/{run.run_name}: {record.get('status', 'not run')}, no test "
                f"evaluation (log: {run.run_dir / LOG_NAME})"
            )
        runs.append({"seed": run.seed, "scalars": metrics["scalars"], "seconds": record["seconds"]})
    return runs


def _rows(direction: Direction, variant: str, runs: list[dict], settings: dict) -> list[dict]:
    """Mean, sample std and n over seeds of each metric and evaluation setting."""
    rows = []
    for imu in settings.get("data.eval_imu", ("on",)):
        for metric in direction.metrics:
            values = [imu_setting_value(r["scalars"], imu, metric) for r in runs]
            values = [v for v in values if v is not None]
            rows.append(
                {
                    "direction": direction.name,
                    "paper": direction.paper,
                    "variant": variant,
                    "eval": "imu" if imu == "on" else "video",
                    "metric": metric,
                    "mean": statistics.fmean(values) if values else float("nan"),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "n": len(values),
                    "seconds": statistics.fmean(r["seconds"] for r in runs),
                }
            )
    return rows


def run_direction(direction: Direction, cfg: AblationConfig, root: Path) -> list[dict]:
    """Data, warm-up and the sweep of every variant x seed of one direction; its table rows."""
    from sce.models.tiny import build_tiny_kit

    out = root / direction.name
    clips = cfg.long_tail_clips if direction.options.class_fractions else cfg.clips
    manifest = generate_synthetic_dataset(
        out / "data",
        clips=clips,
        seed=0,
        duration=cfg.clip_seconds,
        width=cfg.video_size[0],
        height=cfg.video_size[1],
        progress=False,
        options=direction.options,
    )
    warm_dir = warm_up(build_tiny_kit(out / "model_base", seed=0), manifest, out, cfg)
    plan = plan_direction(direction, cfg, root, warm_dir, manifest)
    print(format_plan(plan))
    summary = run_sweep(plan, overwrite=True, echo=False, test="last")
    rows = []
    for variant in plan.names:
        runs = tested_runs(plan, summary, variant)
        (out / variant / "runs.json").write_text(json.dumps(runs, indent=2, default=str))
        rows += _rows(direction, variant, runs, direction.variants[variant])
    return rows


def markdown_table(rows: Sequence[dict], seconds: float) -> str:
    """The table as markdown: mean ± std (n seeds) per row, and the total wall time."""
    lines = [
        f"Ablations on synthetic data, tiny kit, CPU (total {seconds / 60:.1f} min)",
        "",
        "| direction | paper | variant | eval | metric | mean ± std | n | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['direction']} | {r['paper']} | {r['variant']} | {r['eval']} | {r['metric']} "
            f"| {r['mean']:.3f} ± {r['std']:.3f} | {r['n']} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def run_ablations(cfg: AblationConfig) -> list[dict]:
    """Run the configured directions; write ablation_table.csv / .md under cfg.out."""
    unknown = sorted(set(cfg.directions) - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"unknown ablation direction(s) {unknown}; expected {list(DIRECTIONS)}")
    start = time.time()
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for name in cfg.directions:
        rows += run_direction(DIRECTIONS[name], cfg, root)
    seconds = time.time() - start
    with open(root / "ablation_table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (root / "ablation_table.md").write_text(markdown_table(rows, seconds))
    print(markdown_table(rows, seconds))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sce.studies.ablations", description=__doc__)
    parser.add_argument("--out", default=AblationConfig.out)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument(
        "--only", default=",".join(DIRECTIONS), help=f"directions: {','.join(DIRECTIONS)}"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one seed, fewer clips and epochs: minutes, a smoke run",
    )
    args = parser.parse_args(argv)
    quiet_known_noise()  # the same known-harmless warnings `sce` silences
    run_ablations(ablation_config(args))
    return 0


def ablation_config(args: argparse.Namespace) -> AblationConfig:
    """The run's sizes: the defaults, or QUICK with --quick (explicit --out/--seeds win)."""
    cfg = AblationConfig(**QUICK) if args.quick else AblationConfig()
    given = {"out": args.out, "seeds": args.seeds}
    defaults = {"out": AblationConfig.out, "seeds": "0,1,2"}
    changes = {k: v for k, v in given.items() if v != defaults[k]}
    if "seeds" in changes:
        changes["seeds"] = tuple(int(s) for s in changes["seeds"].split(","))
    return replace(cfg, directions=tuple(args.only.split(",")), **changes)


if __name__ == "__main__":
    raise SystemExit(main())
