"""Ablation sweeps: run each variant of an ablation YAML with `sce fit`, one run folder each.

An ablation file (see experiments/ablations/) is a small delta on a base config:

    base: experiments/paper000_dora.yaml   # path from the working directory or a parent of this file
    name: fps                              # sweep folder name (default: the file's stem)
    overrides: {trainer.max_epochs: 1}     # optional, applied to every variant
    variants:                              # variant name -> dotted key overrides
      fps1: {data.fps: 1.0}
      fps3: {data.fps: 3.0}

Each variant's config is base <- ablation `overrides` <- `--set` <- the variant's own values (the
swept values always win), plus the run folder: `trainer.default_root_dir` and a TensorBoard
logger with save_dir=<out>, name=<name>, version=<variant>, so `<out>/<name>/<variant>/` holds the
events, `metrics.json`, `config.yaml` and checkpoints, and `tensorboard --logdir <out>/<name>`
shows one run per variant. The merged config is written to `<variant>/sweep_config.yaml` and run
as `python -m sce.cli fit --config <variant>/sweep_config.yaml` in a subprocess: a crashing
variant does not stop the others; failures are listed at the end and the exit code is 1.

After a run, the variant's hyperparameters (its swept values, key model/data settings and its
token budget) are written as a TensorBoard HParams session in its run folder, with the final
`val_gen/...` metrics as the session's metrics (their scalars are already there), so the HParams
tab compares the variants. `<out>/<name>/sweep.json` summarizes variants, overrides, status,
token budget and final metrics; it is updated after every variant.

    sce sweep experiments/ablations/fps.yaml --base experiments/demo.yaml --set trainer.max_epochs=1
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from sce.budget import add_set_argument, get_dotted, parse_sets, set_dotted

CONFIG_NAME = "sweep_config.yaml"
LOG_NAME = "sweep.log"
SUMMARY_NAME = "sweep.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MISSING = object()

# Hyperparameters logged for every variant (besides its swept keys), read from the resolved config.
KEY_HPARAMS = (
    "model.model_path",
    "model.finetuning",
    "model.rank",
    "model.alpha",
    "model.lr",
    "model.targets",
    "model.neftune_alpha",
    "data.fps",
    "data.before",
    "data.after",
    "data.width",
    "data.height",
    "data.layout",
    "data.imu_dropout",
    "data.class_factors",
    "data.batch_size",
    "trainer.max_epochs",
    "trainer.max_steps",
)
# Final metrics kept in sweep.json and offered to TensorBoard's HParams view (when present).
SUMMARY_METRICS = (
    "acc",
    "macro_f1",
    "f1/collision",
    "f1/near_collision",
    "f1/normal",
    "binary/f1",
    "invalid_rate",
    "ll/acc",
    "ll/macro_f1",
    "imu_on/acc",
    "imu_off/acc",
)


class SweepError(ValueError):
    """An ablation file or a sweep request that cannot run."""


@dataclass
class Variant:
    """One run of a sweep."""

    name: str
    values: dict[str, Any]  # the variant's own (swept) overrides
    config: dict[str, Any]  # the merged config it runs
    run_dir: Path
    budget: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """Short text of the swept values, e.g. 'fps=1' or 'width=420, height=240'."""
        return ", ".join(f"{k.split('.')[-1]}={_text(v)}" for k, v in self.values.items())


@dataclass
class SweepPlan:
    """What `sce sweep` will run."""

    name: str
    ablation: Path
    base: Path
    out_dir: Path  # <out>/<name>
    overrides: dict[str, Any]  # ablation overrides, then --set
    swept: list[str]  # keys the variants set
    variants: list[Variant] = field(default_factory=list)
    all_variants: list[str] = field(default_factory=list)  # every variant of the file, in order


# ------------------------------------------------------------------------------ planning
def load_ablation(path: str | Path) -> dict[str, Any]:
    """Read and check an ablation YAML (base, name, overrides, variants)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"ablation file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, Mapping):
        raise SweepError(f"{path}: expected a mapping with base, name, variants")
    unknown = set(spec) - {"base", "name", "overrides", "variants"}
    if unknown:
        raise SweepError(f"{path}: unknown field(s) {sorted(unknown)}")
    variants = spec.get("variants")
    if not isinstance(variants, Mapping) or not variants:
        raise SweepError(f"{path}: field 'variants' must map variant names to overrides")
    for name, values in variants.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise SweepError(f"{path}: variant name {name!r} must be a folder-safe word")
        if not isinstance(values, Mapping) or not values:
            raise SweepError(f"{path}: variant {name!r} must map dotted keys to values")
    if not isinstance(spec.get("overrides") or {}, Mapping):
        raise SweepError(f"{path}: field 'overrides' must map dotted keys to values")
    name = spec.get("name") or path.stem
    if not _NAME.match(str(name)):
        raise SweepError(f"{path}: field 'name' = {name!r} must be a folder-safe word")
    return {**spec, "name": str(name)}


def find_base(base: str | Path, ablation: Path) -> Path:
    """The base config: as given (from the working directory), else next to the ablation file
    or one of its parents (so `experiments/x.yaml` works from experiments/ablations/)."""
    base = Path(base)
    if base.is_file() or base.is_absolute():
        if not base.is_file():
            raise SweepError(f"base config not found: {base}")
        return base
    for folder in ablation.resolve().parents:
        if (folder / base).is_file():
            return folder / base
    raise SweepError(f"base config {base} not found (from {Path.cwd()} or above {ablation})")


def plan_sweep(
    ablation: str | Path,
    base: str | Path | None = None,
    sets: Sequence[str] | Mapping[str, Any] = (),
    only: Sequence[str] | None = None,
    out: str | Path = "runs/sweeps",
) -> SweepPlan:
    """Merge base, overrides and each variant into the configs a sweep runs."""
    ablation = Path(ablation)
    spec = load_ablation(ablation)
    if base is None and not spec.get("base"):
        raise SweepError(f"{ablation}: no 'base' config; pass --base")
    base_path = find_base(base or spec["base"], ablation)
    base_config = yaml.safe_load(base_path.read_text()) or {}
    overrides = {**(spec.get("overrides") or {})}
    overrides.update(sets if isinstance(sets, Mapping) else parse_sets(sets))
    names = list(spec["variants"])
    if only:
        missing = [n for n in only if n not in names]
        if missing:
            raise SweepError(f"--only: unknown variant(s) {missing}; {ablation} has {names}")
    out_dir = Path(out) / spec["name"]
    plan = SweepPlan(
        name=spec["name"],
        ablation=ablation,
        base=base_path,
        out_dir=out_dir,
        overrides=overrides,
        swept=list(dict.fromkeys(k for v in spec["variants"].values() for k in v)),
        all_variants=names,
    )
    for name in names:
        if only and name not in only:
            continue
        values = dict(spec["variants"][name])
        config = copy.deepcopy(base_config)
        for key, value in {**overrides, **values}.items():
            set_dotted(config, key, value)
        _set_run_folder(config, Path(out), spec["name"], name)
        plan.variants.append(Variant(name, values, config, out_dir / name))
    return plan


def _set_run_folder(config: dict[str, Any], out: Path, sweep: str, variant: str) -> None:
    """One TensorBoard run per variant: <out>/<sweep>/<variant> (no hp_metric placeholder)."""
    run_dir = out / sweep / variant
    set_dotted(config, "trainer.default_root_dir", str(run_dir))
    logger = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {
            "save_dir": str(out),
            "name": sweep,
            "version": variant,
            "default_hp_metric": False,
        },
    }
    set_dotted(config, "trainer.logger", logger)


def attach_budgets(plan: SweepPlan) -> None:
    """Visual tokens per clip (and the rest of the budget) of every variant."""
    from sce.budget import budget_report

    for variant in plan.variants:
        try:
            variant.budget = budget_report(variant.config)
        except Exception as err:  # e.g. a processor folder that does not load: train anyway
            print(f"[sweep] {variant.name}: no token budget ({type(err).__name__}: {err})")


def variant_command(variant: Variant) -> list[str]:
    """The subprocess that trains a variant: `sce fit` on its merged config."""
    return [sys.executable, "-m", "sce.cli", "fit", "--config", str(variant.run_dir / CONFIG_NAME)]


# ------------------------------------------------------------------------------ running
def run_sweep(
    plan: SweepPlan,
    overwrite: bool = False,
    command: Callable[[Variant], list[str]] | None = None,
    echo: bool = True,
) -> dict[str, Any]:
    """Run every planned variant in turn; returns the sweep summary (also in sweep.json).

    `command(variant)` gives the subprocess (default `variant_command`: `sce fit` on the
    variant's config). A variant folder that already has files is an error unless `overwrite`
    (then it is removed first): old event files would mix into the new run's curves.
    """
    command = command or variant_command
    busy = [v.name for v in plan.variants if v.run_dir.is_dir() and any(v.run_dir.iterdir())]
    if busy and not overwrite:
        raise SweepError(
            f"{plan.out_dir}: variant folder(s) {busy} already hold a run; "
            "pass --overwrite to replace them or choose another --out"
        )
    summary = _load_summary(plan)
    for variant in plan.variants:
        shutil.rmtree(variant.run_dir, ignore_errors=True)
        variant.run_dir.mkdir(parents=True)
        (variant.run_dir / CONFIG_NAME).write_text(yaml.safe_dump(variant.config, sort_keys=False))
        entry = _entry(variant, status="running")
        _store(plan, summary, entry)
        print(f"[sweep] {plan.name}/{variant.name} ({variant.label}) -> {variant.run_dir}")
        start = time.monotonic()
        code = _run_logged(command(variant), variant.run_dir / LOG_NAME, echo)
        entry.update(returncode=code, seconds=round(time.monotonic() - start, 1))
        if code == 0:
            entry.update(status="ok", metrics=_final_metrics(variant.run_dir))
            log_variant_hparams(variant, plan.swept)
        else:
            entry.update(status="failed", error=_tail(variant.run_dir / LOG_NAME))
        _store(plan, summary, entry)
    return summary


def _run_logged(cmd: list[str], log_path: Path, echo: bool) -> int:
    """Run cmd, its stdout+stderr into log_path (and echoed); returns the exit code."""
    with log_path.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if echo:
                sys.stdout.write(line)
        return proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _final_metrics(run_dir: Path) -> dict[str, Any]:
    """The summary metrics of the run's metrics.json (written by GenerationEvaluation)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    scalars = record.get("scalars") or {}
    metrics = {k: scalars[k] for k in SUMMARY_METRICS if k in scalars}
    return {"split": record.get("split"), "step": record.get("step"), **metrics}


# ------------------------------------------------------------------------------ hparams
def variant_hparams(variant: Variant, swept: Sequence[str]) -> dict[str, Any]:
    """Flat hyperparameters for TensorBoard: swept keys, key settings, token budget."""
    resolved = _resolved_config(variant)
    keys = list(dict.fromkeys([*swept, *KEY_HPARAMS]))
    params: dict[str, Any] = {}
    for key in keys:
        value = get_dotted(resolved, key, _MISSING)
        if value is _MISSING:
            value = get_dotted(variant.config, key, _MISSING)
        if value is not _MISSING or key in swept:
            params[key] = _hparam_value(None if value is _MISSING else value)
    for key in ("frames_per_clip", "visual_tokens_per_clip", "total_tokens"):
        if variant.budget and key in variant.budget:
            params[f"budget/{key}"] = variant.budget[key]
    params["variant"] = variant.name
    return params


def _resolved_config(variant: Variant) -> dict[str, Any]:
    """LightningCLI's saved config.yaml (every default filled in), else the merged config."""
    path = variant.run_dir / "config.yaml"
    if path.is_file():
        try:
            return yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            pass
    return variant.config


def _hparam_value(value: Any) -> int | float | str | bool:
    if isinstance(value, bool | int | float | str):
        return value
    return "none" if value is None else json.dumps(value, sort_keys=True, default=str)


def metric_tags(run_dir: Path) -> list[str]:
    """HParams metrics of a run: the summary metrics of the split in its metrics.json, and the
    validation loss. The same list for every variant (TensorBoard takes the metric list of one
    run for the whole table); a metric a run lacks shows as blank."""
    split = "val"
    path = run_dir / "metrics.json"
    if path.is_file():
        split = json.loads(path.read_text()).get("split") or split
    return [*(f"{split}_gen/{k}" for k in SUMMARY_METRICS), "val/loss"]


def log_variant_hparams(variant: Variant, swept: Sequence[str]) -> dict[str, Any]:
    """Write the variant's HParams session into its run folder; returns the hparams.

    The session's metrics name scalar tags the run already logged (`val_gen/acc`, ...), so the
    HParams view reads their final values from the run itself; no duplicate points are added.
    """
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    params = variant_hparams(variant, swept)
    tags = metric_tags(variant.run_dir)
    experiment, start, end = hparams(params, {tag: 0.0 for tag in tags})
    writer = SummaryWriter(log_dir=str(variant.run_dir))
    try:
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
    finally:
        writer.close()
    return params


# ------------------------------------------------------------------------------ sweep.json
def _entry(variant: Variant, status: str) -> dict[str, Any]:
    return {
        "name": variant.name,
        "label": variant.label,
        "values": variant.values,
        "run_dir": str(variant.run_dir),
        "status": status,
        "budget": _budget_summary(variant.budget),
        "metrics": {},
    }


def _budget_summary(budget: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not budget:
        return None
    keys = (
        "frames_per_clip",
        "resized_width",
        "resized_height",
        "visual_tokens_per_clip",
        "text_tokens",
        "total_tokens",
        "total_tokens_video_only",
        "max_length",
        "fits",
        "fits_video_only",
        "text_tokens_method",
    )
    return {k: budget[k] for k in keys if k in budget}


def _load_summary(plan: SweepPlan) -> dict[str, Any]:
    """sweep.json as it is (a run with --only keeps the other variants' entries)."""
    path = plan.out_dir / SUMMARY_NAME
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
    entries = {e["name"]: e for e in old.get("variants", []) if e.get("name") in plan.all_variants}
    return {
        "name": plan.name,
        "ablation": str(plan.ablation),
        "base": str(plan.base),
        "out_dir": str(plan.out_dir),
        "swept": plan.swept,
        "overrides": plan.overrides,
        "variants": [entries[n] for n in plan.all_variants if n in entries],
    }


def _store(plan: SweepPlan, summary: dict[str, Any], entry: dict[str, Any]) -> None:
    """Put entry into the summary (file order = ablation order) and rewrite sweep.json."""
    entries = {e["name"]: e for e in summary["variants"]}
    entries[entry["name"]] = entry
    summary["variants"] = [entries[n] for n in plan.all_variants if n in entries]
    summary["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    path = plan.out_dir / SUMMARY_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)


# ------------------------------------------------------------------------------ CLI
def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    return "none" if value is None else str(value)


def format_plan(plan: SweepPlan, command: Callable[[Variant], list[str]] = variant_command) -> str:
    """The plan as `sce sweep --dry-run` prints it."""
    lines = [
        f"sweep {plan.name}: {len(plan.variants)} variant(s) of {plan.ablation}, base {plan.base}",
        f"out: {plan.out_dir}",
    ]
    if plan.overrides:
        lines.append(
            "every variant: " + ", ".join(f"{k}={_text(v)}" for k, v in plan.overrides.items())
        )
    for v in plan.variants:
        b = v.budget or {}
        tokens = ""
        if b:
            fit = "" if b["fits"] else f" > max_length {b['max_length']:,} with telemetry"
            if not b["fits"] and b.get("fits_video_only"):
                fit += f"; video only {b['total_tokens_video_only']:,} fits"
            tokens = (
                f"  [{b['frames_per_clip']} frames, {b['visual_tokens_per_clip']:,} visual tokens,"
                f" {b['total_tokens']:,} total{fit}]"
            )
        lines.append(f"  {v.name}: {v.label}{tokens}")
        lines.append(f"    $ {' '.join(command(v))}")
    return "\n".join(lines)


def format_summary(summary: Mapping[str, Any]) -> str:
    """One line per variant: status, visual tokens, accuracy, macro F1."""
    lines = [f"sweep {summary['name']} ({summary['out_dir']}):"]
    for e in summary["variants"]:
        tokens = (e.get("budget") or {}).get("visual_tokens_per_clip", "-")
        m = e.get("metrics") or {}
        acc, f1 = m.get("acc"), m.get("macro_f1")
        scores = f"acc {acc:.3f} macro F1 {f1:.3f}" if acc is not None and f1 is not None else ""
        lines.append(f"  {e['name']:<16} {e['status']:<8} visual tokens {tokens}  {scores}")
    failed = [e for e in summary["variants"] if e["status"] != "ok"]
    for e in failed:
        lines.append(f"\n[{e['name']}] {e['status']} (log: {Path(e['run_dir']) / LOG_NAME})")
        if e.get("error"):
            lines.append(e["error"])
    return "\n".join(lines)


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ablation", help="ablation YAML (experiments/ablations/*.yaml)")
    parser.add_argument("--base", help="base config instead of the ablation's `base`")
    add_set_argument(
        parser,
        "override for every variant, e.g. --set trainer.max_epochs=1 (repeatable; "
        "YAML values; list items by index: trainer.callbacks.0.init_args.max_samples=8)",
    )
    parser.add_argument("--only", help="comma-separated variant names to run")
    parser.add_argument("--out", default="runs/sweeps", help="sweeps folder (default runs/sweeps)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace variant folders that already hold runs"
    )
    parser.add_argument(
        "--no-budget", action="store_true", help="skip the token budget (needs the processor)"
    )


def sweep_command(args: argparse.Namespace) -> int:
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        plan = plan_sweep(args.ablation, args.base, args.sets, only, args.out)
        if not args.no_budget:
            attach_budgets(plan)
        print(format_plan(plan))
        if args.dry_run:
            return 0
        summary = run_sweep(plan, overwrite=args.overwrite)
    except (SweepError, KeyError) as err:
        print(f"sce sweep: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    ran = {v.name for v in plan.variants}
    failed = [e["name"] for e in summary["variants"] if e["name"] in ran and e["status"] != "ok"]
    if failed:
        print(f"sce sweep: {len(failed)} variant(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"tensorboard --logdir {plan.out_dir}")
    return 0
