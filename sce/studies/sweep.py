"""Ablation sweeps: run each variant of an ablation YAML with `sce fit`, one run folder each.

An ablation file (see experiments/ablations/) is a small delta on a base config:

    base: experiments/paper000_dora.yaml   # path from the working directory or a parent of this file
    name: fps                              # sweep folder name (default: the file's stem)
    overrides: {trainer.max_epochs: 1}     # optional, applied to every variant
    variants:                              # variant name -> dotted key overrides
      fps1: {data.window.fps: 1.0}
      fps3: {data.window.fps: 3.0}

or, instead of `variants`, a grid: every combination of the listed values is one variant, named
by its keys' last parts and values (`fps1_rank8`), in the grid's order (the last key fastest):

    grid: {data.window.fps: [1.0, 3.0], model.rank: [8, 32]}   # 4 variants: fps1_rank8, ...

Each variant's config is base <- ablation `overrides` <- `--key=value` arguments <- the variant's own values (the
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
token budget, final metrics and wall time; it is updated after every run.

Seeds (`--seeds 0,1,2`): each variant runs once per seed, in `<out>/<name>/<variant>/seed<S>/`
(TensorBoard run `<variant>/seed<S>`), with `seed_everything` and `data.seed` (training order,
resampling, augmentation) set to the seed. `data.eval_seed` is left as the config sets it, the
same for every seed, so every seed is scored on the same evaluation subset and the spread is the
training's, not the evaluation sample's. A seeded variant's sweep.json entry holds its `runs`
(seed, status, metrics, seconds) and, over the seeds whose run finished, `metrics` (the mean of
each summary metric) and `std` (the SAMPLE standard deviation, n - 1 in the denominator; null
with fewer than two values). Without --seeds the layout is one folder per variant, as before.

`--test best|last` then tests each run that trained, in the same subprocess log: `sce test --run
<run folder> --ckpt best|last`, so its metrics.json (and the summary) hold the test split.
`make ablations` (sce.studies.ablations) runs its directions this way.

`--resume` skips the runs that finished (status ok in sweep.json, metrics.json still in their
folder and the same merged config) and reruns the others, replacing their folders.
`--report` then executes notebooks/ablations.ipynb on the sweep folder (nbclient when installed,
else its code cells in this process on matplotlib's Agg backend) and writes the executed
notebook (`ablations.ipynb`), `figures/*.png` and `ablation_table.csv` into it.

    sce sweep experiments/ablations/fps.yaml --base experiments/demo.yaml --trainer.max_epochs=1
    sce sweep experiments/ablations/fps.yaml --seeds 0,1,2 --resume --report
    sce sweep experiments/ablations/fps.yaml --seeds 0,1,2 --test last
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import io
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from sce.evaluate.dashboard import scalar_tag
from sce.evaluate.run_folder import (
    SWEEP_FILE,
    RunFolder,
    RunFolderError,
    flat_config,
    seed_folder,
)
from sce.train.config import ConfigError, as_overrides, resolve_config
from sce.train.runs import CKPT_CHOICES

CONFIG_NAME = "sweep_config.yaml"
LOG_NAME = "sweep.log"
SUMMARY_NAME = SWEEP_FILE
SPREAD = (
    "std: sample standard deviation (n - 1 in the denominator) over the seeds whose run "
    "finished; metrics: their mean; seconds: wall time of the runs"
)
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
    "data.window.fps",
    "data.window.before",
    "data.window.after",
    "data.window.width",
    "data.window.height",
    "data.window.layout",
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
    """One run of a sweep: a variant, at one seed when the sweep has seeds."""

    name: str
    values: dict[str, Any]  # the variant's own (swept) overrides
    config: dict[str, Any]  # the merged config it runs
    run_dir: Path
    budget: dict[str, Any] | None = None
    seed: int | None = None

    @property
    def label(self) -> str:
        """Short text of the swept values, e.g. 'fps=1' or 'width=420, height=240'."""
        return ", ".join(f"{k.split('.')[-1]}={_text(v)}" for k, v in self.values.items())

    @property
    def run_name(self) -> str:
        """'fps1', or 'fps1/seed0' in a seeded sweep."""
        return self.name if self.seed is None else f"{self.name}/{seed_folder(self.seed)}"


@dataclass
class SweepPlan:
    """What `sce sweep` will run."""

    name: str
    ablation: Path
    base: Path
    out_dir: Path  # <out>/<name>
    overrides: dict[str, Any]  # ablation overrides, then the --key=value arguments
    swept: list[str]  # keys the variants set
    variants: list[Variant] = field(default_factory=list)  # runs, variant by variant
    all_variants: list[str] = field(default_factory=list)  # every variant of the file, in order
    seeds: list[int] | None = None  # --seeds; None: one run per variant, no seed folders

    def runs_of(self, name: str) -> list[Variant]:
        """The planned runs of one variant (one per seed)."""
        return [v for v in self.variants if v.name == name]

    @property
    def names(self) -> list[str]:
        """The planned variants' names, in ablation order."""
        return list(dict.fromkeys(v.name for v in self.variants))


SEED_KEYS = ("seed_everything", "data.seed")  # what --seeds sets (never data.eval_seed)


# ------------------------------------------------------------------------------ planning
def load_ablation(path: str | Path) -> dict[str, Any]:
    """Read and check an ablation YAML (base, name, overrides, variants)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"ablation file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, Mapping):
        raise SweepError(f"{path}: expected a mapping with base, name, variants")
    unknown = set(spec) - {"base", "name", "overrides", "variants", "grid"}
    if unknown:
        raise SweepError(f"{path}: unknown field(s) {sorted(unknown)}")
    if "grid" in spec:
        if "variants" in spec:
            raise SweepError(f"{path}: give 'variants' or 'grid', not both")
        spec = {**spec, "variants": grid_variants(spec["grid"], path)}
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


def grid_variants(grid: Any, path: Path) -> dict[str, dict[str, Any]]:
    """The variants of a grid {dotted key: [values]}: the cartesian product, in order (the last
    key fastest), each named `<key's last part><value>` joined by "_" (`fps1_rank8`); a value
    that makes no folder-safe name (a mapping, a text with spaces) is named by its position
    (`window0`)."""
    if not isinstance(grid, Mapping) or not grid:
        raise SweepError(f"{path}: field 'grid' must map dotted keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: grid key {key!r} must list its values, e.g. [1, 3]")
    names = {key: [_value_name(key, v, i) for i, v in enumerate(vs)] for key, vs in grid.items()}
    variants: dict[str, dict[str, Any]] = {}
    for picks in itertools.product(*(range(len(vs)) for vs in grid.values())):
        name = "_".join(names[key][i] for key, i in zip(grid, picks, strict=True))
        if name in variants:
            raise SweepError(f"{path}: grid gives variant {name!r} twice; make its values distinct")
        variants[name] = {key: grid[key][i] for key, i in zip(grid, picks, strict=True)}
    return variants


def _value_name(key: str, value: Any, index: int) -> str:
    short = key.split(".")[-1]
    text = _text(value)
    return f"{short}{text}" if _NAME.match(f"{short}{text}") else f"{short}{index}"


def x_axis(
    swept: Sequence[str], values: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> tuple[list[float], str, bool, list[str]]:
    """How the ablation notebook places the variants: (positions, axis label, log scale, tick
    labels). One swept key that every variant sets to a distinct number: that number (log
    scale when it spans 8x or more), the key as the axis label. Anything else (a grid, variants
    that set different keys, non-numeric values): one position per variant, labelled by its
    swept values ("fps=1, rank=8"), the axis named by every swept key ("data.window.fps x
    model.rank"), never by the first key alone."""
    numbers = [v.get(swept[0]) for v in values] if len(swept) == 1 else []
    numeric = bool(numbers) and all(_is_number(x) for x in numbers)
    if numeric and len(set(numbers)) == len(numbers):
        x = [float(v) for v in numbers]
        log = min(x) > 0 and max(x) / min(x) >= 8
        return x, swept[0], log, [f"{v:g}" for v in x]
    return list(range(len(values))), " x ".join(swept) or "variant", False, list(labels)


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
    seeds: Sequence[int] | None = None,
) -> SweepPlan:
    """Resolve base, overrides and each variant into the configs a sweep runs; with `seeds`, one
    run per variant and seed (`seed_everything` and `data.seed` set to it).

    `sets` are `--data.window.fps=15` style arguments (or a {dotted key: value} mapping) for every
    variant. Each run's config is resolved by the `sce fit` parser (sce.train.config) from
    `--config BASE`, then the ablation's overrides, `sets`, the variant's values, the seed and
    the run folder as `--key=value` arguments (later ones win): a typo or a bad value fails
    here, before any run starts."""
    ablation = Path(ablation)
    spec = load_ablation(ablation)
    if base is None and not spec.get("base"):
        raise SweepError(f"{ablation}: no 'base' config; pass --base")
    base_path = find_base(base or spec["base"], ablation)
    set_args = as_overrides(sets) if isinstance(sets, Mapping) else list(sets)
    overrides = {**(spec.get("overrides") or {}), **_recorded(set_args)}
    names = list(spec["variants"])
    if only:
        missing = [n for n in only if n not in names]
        if missing:
            raise SweepError(f"--only: unknown variant(s) {missing}; {ablation} has {names}")
    seeds = _check_seeds(
        seeds, ablation, [*overrides, *(k for v in spec["variants"].values() for k in v)]
    )
    out_dir = Path(out) / spec["name"]
    plan = SweepPlan(
        name=spec["name"],
        ablation=ablation,
        base=base_path,
        out_dir=out_dir,
        overrides=overrides,
        swept=list(dict.fromkeys(k for v in spec["variants"].values() for k in v)),
        all_variants=names,
        seeds=seeds,
    )
    for name in names:
        if only and name not in only:
            continue
        values = dict(spec["variants"][name])
        for seed in seeds or [None]:
            version = name if seed is None else f"{name}/{seed_folder(seed)}"
            args = [
                *as_overrides(spec.get("overrides") or {}),
                *set_args,
                *as_overrides(values),
                *as_overrides(dict.fromkeys(SEED_KEYS if seed is not None else (), seed)),
                *as_overrides(_run_folder(Path(out), spec["name"], version)),
            ]
            try:
                config = resolve_config(base_path, args)
            except ConfigError as err:
                raise SweepError(f"{ablation}: variant {name!r}: {err}") from err
            plan.variants.append(Variant(name, values, config, out_dir / version, seed=seed))
    return plan


def _check_seeds(
    seeds: Sequence[int] | None, ablation: Path, keys: Sequence[str]
) -> list[int] | None:
    """--seeds as a list of distinct ints; the ablation may not set the keys they set."""
    if seeds is None:
        return None
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise SweepError(f"--seeds: expected distinct non-negative integers, got {seeds}")
    clash = sorted(set(keys) & set(SEED_KEYS))
    if clash:
        raise SweepError(
            f"--seeds sets {list(SEED_KEYS)}; {ablation} or an argument also sets {clash}"
        )
    return seeds


def _recorded(args: Sequence[str]) -> dict[str, Any]:
    """{key: value} of `--key=value` arguments, as sweep.json and the plan list them."""
    out: dict[str, Any] = {}
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        key, sep, value = arg[2:].partition("=")
        if not sep:  # `--key value`
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else ""
        out[key] = yaml.safe_load(value) if value else None
    return out


def _run_folder(out: Path, sweep: str, version: str) -> dict[str, Any]:
    """One TensorBoard run per run folder: <out>/<sweep>/<version>, version 'fps1' or
    'fps1/seed0' (no hp_metric placeholder)."""
    logger = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {
            "save_dir": str(out),
            "name": sweep,
            "version": version,
            "default_hp_metric": False,
        },
    }
    return {"trainer.default_root_dir": str(out / sweep / version), "trainer.logger": logger}


def get_dotted(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """config[a][b][c] for 'a.b.c' (an integer part indexes a list); `default` if absent."""
    node: Any = config
    for part in key.split("."):
        if isinstance(node, list) and part.lstrip("-").isdigit() and abs(int(part)) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return default
    return node


def attach_budgets(plan: SweepPlan) -> None:
    """Visual tokens per clip (and the rest of the budget) of every variant."""
    from sce.train.budget import budget_report

    for name in plan.names:
        runs = plan.runs_of(name)
        try:
            budget = budget_report(runs[0].config)  # the seed changes no token
        except Exception as err:  # e.g. a processor folder that does not load: train anyway
            print(f"[sweep] {name}: no token budget ({type(err).__name__}: {err})")
            continue
        for run in runs:
            run.budget = budget


def variant_command(variant: Variant) -> list[str]:
    """The subprocess that trains a variant: `sce fit` on its merged config."""
    return [sys.executable, "-m", "sce.cli", "fit", "--config", str(variant.run_dir / CONFIG_NAME)]


def test_command(variant: Variant, ckpt: str) -> list[str]:
    """The subprocess that tests a trained run (`--test`): `sce test --run` on its own config
    and `ckpt` ("best" or "last") checkpoint; the results land in the run folder."""
    return [sys.executable, "-m", "sce.cli", "test", "--run", str(variant.run_dir), "--ckpt", ckpt]


# ------------------------------------------------------------------------------ running
def run_sweep(
    plan: SweepPlan,
    overwrite: bool = False,
    command: Callable[[Variant], list[str]] | None = None,
    echo: bool = True,
    resume: bool = False,
    test: str | None = None,
) -> dict[str, Any]:
    """Run every planned run in turn; returns the sweep summary (also in sweep.json).

    `command(run)` gives the subprocess (default `variant_command`: `sce fit` on the run's
    config). With `test` ("best" or "last"), a run that trained is then tested on that
    checkpoint (`test_command`), and its metrics are the test split's. A run folder that already has files is an error (old event files would mix into
    the new run's curves) unless `overwrite` (the planned variants' folders are removed first)
    or `resume` (finished runs are skipped, see `finished_runs`; the others' folders replaced).
    """
    if overwrite and resume:
        raise SweepError("--resume keeps finished runs and --overwrite replaces them: pick one")
    command = command or variant_command
    summary = _load_summary(plan)
    _check_layout(plan, summary, overwrite)
    done = finished_runs(plan, summary) if resume else set()
    todo = [v for v in plan.variants if v.run_name not in done]
    busy = [v.run_name for v in todo if _holds_files(v.run_dir)]
    if busy and not (overwrite or resume):
        raise SweepError(
            f"{plan.out_dir}: run folder(s) {busy} already hold a run; pass --resume to keep "
            "the finished runs and rerun the others, --overwrite to replace them, "
            "or choose another --out"
        )
    if resume:
        skipped = [v.run_name for v in plan.variants if v.run_name in done]
        print(
            f"[sweep] --resume: skipping {len(skipped)} finished run(s)"
            + (f" ({', '.join(skipped)})" if skipped else "")
            + f"; {len(todo)} to run"
        )
    if overwrite:
        for name in dict.fromkeys(v.name for v in todo):
            shutil.rmtree(plan.out_dir / name, ignore_errors=True)
        summary["variants"] = [e for e in summary["variants"] if e["name"] not in plan.names]
    for variant in todo:
        _run_one(plan, summary, variant, command, echo, test)
    return summary


def _run_one(
    plan: SweepPlan,
    summary: dict[str, Any],
    variant: Variant,
    command: Callable[[Variant], list[str]],
    echo: bool,
    test: str | None = None,
) -> None:
    """Train (and with `test`, test) one run in a fresh folder and record it in sweep.json
    (running, then its end)."""
    shutil.rmtree(variant.run_dir, ignore_errors=True)
    variant.run_dir.mkdir(parents=True)
    (variant.run_dir / CONFIG_NAME).write_text(yaml.safe_dump(variant.config, sort_keys=False))
    record = _run_record(variant, status="running")
    _store(plan, summary, variant, record)
    print(f"[sweep] {plan.name}/{variant.run_name} ({variant.label}) -> {variant.run_dir}")
    start = time.monotonic()
    log = variant.run_dir / LOG_NAME
    code = _run_logged(command(variant), log, echo)
    if code == 0 and test:
        code = _run_logged(test_command(variant, test), log, echo, append=True)
    record.update(returncode=code, seconds=round(time.monotonic() - start, 1))
    if code == 0:
        record.update(status="ok", metrics=_final_metrics(variant.run_dir))
        log_variant_hparams(variant, plan.swept)
    else:
        record.update(status="failed", error=_tail(variant.run_dir / LOG_NAME))
    _store(plan, summary, variant, record)


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def finished_runs(plan: SweepPlan, summary: Mapping[str, Any]) -> set[str]:
    """Run names (`Variant.run_name`) that --resume skips: status ok in sweep.json and
    metrics.json still in the run folder. A finished run whose sweep_config.yaml differs from
    the config planned now is an error, not a rerun: --resume never replaces a finished run."""
    entries = {e["name"]: e for e in summary["variants"]}
    done = set()
    for variant in plan.variants:
        record = run_record_of(entries.get(variant.name), variant.seed)
        if record and record.get("status") == "ok":
            if RunFolder(variant.run_dir).metrics_path.is_file():
                _check_same_config(variant)
                done.add(variant.run_name)
    return done


def _check_same_config(variant: Variant) -> None:
    path = variant.run_dir / CONFIG_NAME
    if not path.is_file():
        return
    old = flat_config(yaml.safe_load(path.read_text()) or {})
    new = flat_config(variant.config)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, _MISSING) != new.get(k))
    if changed:
        raise SweepError(
            f"{variant.run_dir}: finished with another config ({', '.join(changed)} differ); "
            "--resume keeps finished runs: pass --overwrite to rerun, or choose another --out"
        )


def _check_layout(plan: SweepPlan, summary: Mapping[str, Any], overwrite: bool) -> None:
    """A seeded run must not land inside an unseeded run's folder (its events would mix), nor
    an unseeded run replace a variant folder of seed runs: either needs --overwrite."""
    if overwrite:
        return
    seeded = plan.seeds is not None
    entries = {e["name"]: e for e in summary["variants"]}
    for name in plan.names:
        folder = plan.out_dir / name
        children = list(folder.iterdir()) if folder.is_dir() else []
        seed_dirs = [c for c in children if c.is_dir() and re.fullmatch(r"seed\d+", c.name)]
        other = len(children) - len(seed_dirs)
        entry_seeded = "runs" in entries[name] if name in entries else None
        if seeded and (other or entry_seeded is False):
            found = "an unseeded run"
        elif not seeded and (seed_dirs or entry_seeded):
            found = "runs per seed"
        else:
            continue
        raise SweepError(
            f"{folder} holds {found}; run it as it was run "
            f"({'without --seeds' if seeded else 'with its --seeds'}), "
            "pass --overwrite to replace it, or choose another --out"
        )


def run_record_of(entry: Mapping[str, Any] | None, seed: int | None) -> Mapping[str, Any] | None:
    """A run's record in a sweep.json entry: the entry itself without seeds, else the run."""
    if entry is None:
        return None
    if seed is None:
        return None if "runs" in entry else entry
    return next((r for r in entry.get("runs", []) if r.get("seed") == seed), None)


def _run_logged(cmd: list[str], log_path: Path, echo: bool, append: bool = False) -> int:
    """Run cmd, its stdout+stderr into log_path (and echoed); returns the exit code."""
    with log_path.open("a" if append else "w") as log:
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
    record = RunFolder(run_dir).metrics()
    if record is None:
        return {}
    scalars = record.get("scalars") or {}
    metrics = {k: scalars[k] for k in SUMMARY_METRICS if k in scalars}
    return {"split": record.get("split"), "step": record.get("step"), **metrics}


# ------------------------------------------------------------------------------ hparams
def variant_hparams(variant: Variant, swept: Sequence[str]) -> dict[str, Any]:
    """Flat hyperparameters for TensorBoard: swept keys, key settings, token budget, seed."""
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
    if variant.seed is not None:
        params["seed"] = variant.seed
    return params


def _resolved_config(variant: Variant) -> dict[str, Any]:
    """LightningCLI's saved config.yaml (every default filled in), else the merged config."""
    try:
        return RunFolder(variant.run_dir).config() or variant.config
    except RunFolderError:  # a config.yaml that does not read
        return variant.config


def _hparam_value(value: Any) -> int | float | str | bool:
    if isinstance(value, bool | int | float | str):
        return value
    return "none" if value is None else json.dumps(value, sort_keys=True, default=str)


def metric_tags(run_dir: Path) -> list[str]:
    """HParams metrics of a run: the summary metrics of the split in its metrics.json, and the
    validation loss. The same list for every variant (TensorBoard takes the metric list of one
    run for the whole table); a metric a run lacks shows as blank."""
    split = (RunFolder(run_dir).metrics() or {}).get("split") or "val"
    return [*(scalar_tag(split, k) for k in SUMMARY_METRICS), "val/loss"]


def log_variant_hparams(variant: Variant, swept: Sequence[str]) -> dict[str, Any]:
    """Write the variant's HParams session into its run folder; returns the hparams.

    The session's metrics name scalar tags the run already logged (`val_gen/acc`,
    `val_gen_class/f1/collision`, ...: sce.evaluate.dashboard.scalar_tag), so the
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
def _entry(variant: Variant) -> dict[str, Any]:
    return {
        "name": variant.name,
        "label": variant.label,
        "values": variant.values,
        "run_dir": str(variant.run_dir if variant.seed is None else variant.run_dir.parent),
        "budget": _budget_summary(variant.budget),
    }


def _run_record(variant: Variant, status: str) -> dict[str, Any]:
    """What sweep.json says of one run (status, then returncode, seconds, metrics or error)."""
    if variant.seed is None:
        return {"status": status, "metrics": {}}
    return {"seed": variant.seed, "run_dir": str(variant.run_dir), "status": status, "metrics": {}}


def seed_statistics(runs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], dict]:
    """(mean, std) of each summary metric over the runs with status ok; std is the SAMPLE
    standard deviation (n - 1), None with fewer than two values. A metric a run lacks or has
    as null (e.g. F1 of a class never predicted) is left out of that metric's mean."""
    finished = [r.get("metrics") or {} for r in runs if r.get("status") == "ok"]
    mean: dict[str, float] = {}
    std: dict[str, float | None] = {}
    for key in SUMMARY_METRICS:
        values = [float(m[key]) for m in finished if _is_number(m.get(key))]
        if values:
            mean[key] = statistics.fmean(values)
            std[key] = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seeded_entry(variant: Variant, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A seeded variant: its runs (by seed), overall status, mean/std metrics, total seconds."""
    runs = sorted(runs, key=lambda r: r["seed"])
    statuses = {r["status"] for r in runs}
    status = next((s for s in ("running", "failed") if s in statuses), None)
    mean, std = seed_statistics(runs)
    return {
        **_entry(variant),
        "status": status or ("ok" if statuses == {"ok"} else "incomplete"),
        "seeds": [r["seed"] for r in runs],
        "n_ok": sum(r["status"] == "ok" for r in runs),
        "metrics": mean,  # mean over the seeds whose run finished
        "std": std,  # sample standard deviation (n - 1) over the same seeds
        "seconds": round(sum(r.get("seconds") or 0.0 for r in runs), 1),
        "runs": list(runs),
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


def _store(
    plan: SweepPlan, summary: dict[str, Any], variant: Variant, record: dict[str, Any]
) -> None:
    """Put a run's record into its variant's entry (file order = ablation order), update the
    totals and rewrite sweep.json."""
    entries = {e["name"]: e for e in summary["variants"]}
    if variant.seed is None:
        entries[variant.name] = {**_entry(variant), **record}
    else:
        old = entries.get(variant.name) or {}
        runs = {r["seed"]: r for r in old.get("runs", [])}
        runs[variant.seed] = record
        entries[variant.name] = _seeded_entry(variant, list(runs.values()))
    summary["variants"] = [entries[n] for n in plan.all_variants if n in entries]
    summary["seconds"] = round(sum(e.get("seconds") or 0.0 for e in summary["variants"]), 1)
    if any("runs" in e for e in summary["variants"]):
        summary["spread"] = SPREAD
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
    seeds = f" x {len(plan.seeds)} seed(s) {plan.seeds}" if plan.seeds else ""
    lines = [
        f"sweep {plan.name}: {len(plan.names)} variant(s){seeds} of {plan.ablation}, "
        f"base {plan.base}",
        f"out: {plan.out_dir}",
    ]
    if plan.overrides:
        lines.append(
            "every variant: " + ", ".join(f"{k}={_text(v)}" for k, v in plan.overrides.items())
        )
    for name in plan.names:
        runs = plan.runs_of(name)
        lines.append(f"  {name}: {runs[0].label}{_budget_text(runs[0].budget)}")
        lines.extend(f"    $ {' '.join(command(v))}" for v in runs)
    return "\n".join(lines)


def _budget_text(b: Mapping[str, Any] | None) -> str:
    if not b:
        return ""
    fit = "" if b["fits"] else f" > max_length {b['max_length']:,} with telemetry"
    if not b["fits"] and b.get("fits_video_only"):
        fit += f"; video only {b['total_tokens_video_only']:,} fits"
    return (
        f"  [{b['frames_per_clip']} frames, {b['visual_tokens_per_clip']:,} visual tokens,"
        f" {b['total_tokens']:,} total{fit}]"
    )


# (metric key, printed name) of the final summary, when the runs have them
SUMMARY_COLUMNS = (
    ("acc", "acc"),
    ("ll/acc", "ll/acc"),
    ("macro_f1", "macro F1"),
    ("imu_on/acc", "IMU on acc"),
    ("imu_off/acc", "IMU off acc"),
    ("invalid_rate", "invalid"),
)


def format_summary(summary: Mapping[str, Any]) -> str:
    """One line per variant: status, visual tokens, accuracy, log-likelihood accuracy, macro
    F1, IMU on / off accuracy, invalid rate (mean ± sample std over seeds in a seeded sweep),
    wall time; then the failed runs' log tails."""
    seeded = any("runs" in e for e in summary["variants"])
    total = summary.get("seconds")
    lines = [
        f"sweep {summary['name']} ({summary['out_dir']})"
        + (": mean ± sample std over seeds" if seeded else "")
        + (f"; runs took {total:.0f} s" if total is not None else "")
    ]
    for e in summary["variants"]:
        tokens = (e.get("budget") or {}).get("visual_tokens_per_clip", "-")
        mean, std = e.get("metrics") or {}, e.get("std") or {}
        scores = [
            f"{label} {_mean_std(mean[key], std.get(key))}"
            for key, label in SUMMARY_COLUMNS
            if _is_number(mean.get(key))
        ]
        seeds = f" {e['n_ok']}/{len(e['runs'])} seeds ok" if "runs" in e else ""
        seconds = f"  {e['seconds']:.0f} s" if e.get("seconds") is not None else ""
        lines.append(
            f"  {e['name']:<16} {e['status']:<8}{seeds} visual tokens {tokens}  "
            + "  ".join(scores)
            + seconds
        )
    for e in summary["variants"]:
        for name, record in _failed_runs(e):
            log = Path(record.get("run_dir") or e["run_dir"]) / LOG_NAME
            lines.append(f"\n[{name}] {record['status']} (log: {log})")
            if record.get("error"):
                lines.append(record["error"])
    return "\n".join(lines)


def _mean_std(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _failed_runs(entry: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(run name, record) of an entry's runs that did not finish."""
    if "runs" not in entry:
        return [] if entry["status"] == "ok" else [(entry["name"], entry)]
    return [
        (f"{entry['name']}/{seed_folder(r['seed'])}", r)
        for r in entry["runs"]
        if r["status"] != "ok"
    ]


# ------------------------------------------------------------------------------ report
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "ablations.ipynb"
REPORT_NAME = "ablations.ipynb"  # the executed notebook, in the sweep folder


class NotebookError(RuntimeError):
    """A notebook cell failed while writing a sweep report."""


def write_report(sweep_dir: str | Path, notebook: Path = NOTEBOOK, engine: str = "auto") -> Path:
    """Execute the ablation notebook on a sweep folder; returns the executed copy
    (`<sweep_dir>/ablations.ipynb`, written even when a cell fails, to show where). The
    notebook itself writes `figures/*.png` and `ablation_table.csv` there.

    engine: "nbclient" (a Jupyter kernel, inline figures), "inprocess" (the code cells run in
    this process on matplotlib's Agg backend, figures captured as PNG), or "auto": nbclient
    when nbclient, nbformat and ipykernel are installed (`pip install -e .[notebook]`)."""
    sweep_dir = Path(sweep_dir).resolve()
    if not (sweep_dir / SUMMARY_NAME).is_file():
        raise SweepError(f"{sweep_dir}: no {SUMMARY_NAME}; run `sce sweep` first")
    if not notebook.is_file():
        raise SweepError(
            f"notebook not found: {notebook} (it ships in the repository's notebooks/)"
        )
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:  # multi-line sources are stored as lists of lines
        if isinstance(cell["source"], list):
            cell["source"] = "".join(cell["source"])
    _inject_sweep_dir(nb, sweep_dir)
    if engine == "auto":
        engine = "nbclient" if _have("nbclient", "nbformat", "ipykernel") else "inprocess"
    out = sweep_dir / REPORT_NAME
    try:
        if engine == "nbclient":
            nb = _execute_nbclient(nb, sweep_dir)
        elif engine == "inprocess":
            _execute_in_process(nb)
        else:
            raise SweepError(f"unknown notebook engine {engine!r}: nbclient, inprocess or auto")
    finally:
        out.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return out


def _have(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def _inject_sweep_dir(nb: dict[str, Any], sweep_dir: Path) -> None:
    """A parameters cell after the notebook's first code cell (papermill's convention), so the
    executed notebook shows which folder it read."""
    first = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "injected-parameters",
        "metadata": {"tags": ["injected-parameters"]},
        "outputs": [],
        "source": f"SWEEP_DIR = {str(sweep_dir)!r}  # set by sce sweep --report",
    }
    nb["cells"].insert(first + 1, cell)


def _execute_nbclient(nb: dict[str, Any], cwd: Path) -> dict[str, Any]:
    import nbformat
    from nbclient import NotebookClient

    node = nbformat.from_dict(nb)
    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    client = NotebookClient(
        node, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute(env=env)
    except Exception as err:  # CellExecutionError's text ends with the cell's "Error: message"
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise NotebookError(lines[-1]) from err
    finally:
        nb.update(node)
    return nb


def _execute_in_process(nb: dict[str, Any]) -> None:
    """Run the code cells in one namespace without IPython, recording what Jupyter's inline
    backend shows: printed text, the last expression's value and every open figure (then
    closed). Outputs go into the cells; a failing cell gets an error output and raises."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    namespace: dict[str, Any] = {"__name__": "__main__"}
    count = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        count += 1
        stdout = io.StringIO()
        cell["execution_count"], cell["outputs"] = count, []
        try:
            with contextlib.redirect_stdout(stdout), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*non-interactive.*")
                value = _run_cell(cell["source"], namespace, f"<cell {count}>")
        except Exception as err:
            cell["outputs"] = [*_stream(stdout), _error_output(err)]
            plt.close("all")
            raise NotebookError(f"cell {count}: {type(err).__name__}: {err}") from err
        cell["outputs"] = [*_stream(stdout), *_result(value, count), *_figures(plt)]


def _run_cell(source: str, namespace: dict[str, Any], filename: str) -> Any:
    """exec the cell; the value of its last line when that is an expression (as Jupyter)."""
    tree = ast.parse(source, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), namespace)


def _stream(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    return [{"output_type": "stream", "name": "stdout", "text": text}] if text else []


def _result(value: Any, count: int) -> list[dict[str, Any]]:
    if value is None:
        return []
    data = {"text/plain": repr(value)}
    if hasattr(value, "_repr_html_"):
        data["text/html"] = value._repr_html_()
    return [
        {"output_type": "execute_result", "execution_count": count, "data": data, "metadata": {}}
    ]


def _figures(plt: Any) -> list[dict[str, Any]]:
    outputs = []
    for number in plt.get_fignums():
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png", dpi=100)
        png = base64.b64encode(buffer.getvalue()).decode("ascii")
        outputs.append({"output_type": "display_data", "data": {"image/png": png}, "metadata": {}})
    plt.close("all")
    return outputs


def _error_output(err: Exception) -> dict[str, Any]:
    import traceback

    return {
        "output_type": "error",
        "ename": type(err).__name__,
        "evalue": str(err),
        "traceback": traceback.format_exception(err),
    }


# ------------------------------------------------------------------------------ CLI
def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    from sce.train.config import add_override_arguments

    parser.add_argument(
        "ablation", help="ablation YAML (experiments/ablations/*.yaml): variants or a grid"
    )
    parser.add_argument("--base", help="base config instead of the ablation's `base`")
    add_override_arguments(parser)  # --trainer.max_epochs=1 ...: for every variant
    parser.add_argument("--only", help="comma-separated variant names to run")
    parser.add_argument(
        "--seeds",
        help="comma-separated seeds, e.g. 0,1,2: each variant runs once per seed in "
        "<variant>/seed<S>/ (seed_everything and data.seed; data.eval_seed stays fixed, so every "
        "seed is scored on the same items); sweep.json and the summary give mean ± sample std",
    )
    parser.add_argument("--out", default="runs/sweeps", help="sweeps folder (default runs/sweeps)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    replace = parser.add_mutually_exclusive_group()
    replace.add_argument(
        "--overwrite", action="store_true", help="replace variant folders that already hold runs"
    )
    replace.add_argument(
        "--resume",
        action="store_true",
        help="skip the runs that finished (status ok in sweep.json, metrics.json in their "
        "folder); rerun unfinished and failed ones, replacing their folders",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="then execute notebooks/ablations.ipynb on the sweep folder: the executed notebook, "
        "figures/*.png and ablation_table.csv go into it (with --resume and nothing left to "
        "run: the report of a finished sweep)",
    )
    parser.add_argument(
        "--test",
        choices=CKPT_CHOICES,
        help="then test each run that trained on its best or last checkpoint (sce test --run "
        "RUN --ckpt ...): the summary and sweep.json report the test split",
    )
    parser.add_argument(
        "--no-budget", action="store_true", help="skip the token budget (needs the processor)"
    )


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SweepError(f"--seeds: expected comma-separated integers, got {text!r}") from None


def sweep_command(args: argparse.Namespace) -> int:
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        seeds = _parse_seeds(args.seeds)
        plan = plan_sweep(args.ablation, args.base, args.config_overrides, only, args.out, seeds)
        if not args.no_budget:
            attach_budgets(plan)
        print(format_plan(plan))
        if args.dry_run:
            return 0
        summary = run_sweep(plan, overwrite=args.overwrite, resume=args.resume, test=args.test)
    except (SweepError, KeyError) as err:
        print(f"sce sweep: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    code = 0
    if args.report:
        code = _report(plan.out_dir)
    entries = {e["name"]: e for e in summary["variants"]}
    failed = [
        v.run_name
        for v in plan.variants
        if (run_record_of(entries.get(v.name), v.seed) or {}).get("status") != "ok"
    ]
    if failed:
        kind = "variant" if plan.seeds is None else "run"
        print(f"sce sweep: {len(failed)} {kind}(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"tensorboard --logdir {plan.out_dir}")
    return code


def _report(sweep_dir: Path) -> int:
    """`--report`: print where the executed notebook and figures went; 1 when it failed."""
    print(f"[sweep] report: executing {NOTEBOOK} on {sweep_dir}")
    try:
        path = write_report(sweep_dir)
    except (NotebookError, SweepError) as err:
        partial = sweep_dir / REPORT_NAME
        where = f" (the notebook up to the failing cell: {partial})" if partial.is_file() else ""
        print(f"sce sweep --report: {err}{where}", file=sys.stderr)
        return 1
    figures = sorted(p.name for p in (sweep_dir / "figures").glob("*.png"))
    print(f"report: {path}")
    print(f"figures ({len(figures)}): {sweep_dir / 'figures'}/ ({', '.join(figures)})")
    print(f"table: {sweep_dir / 'ablation_table.csv'}")
    return 0
