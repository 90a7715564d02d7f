"""Run folders: one option names a run, and a finished run's config and checkpoints are found.

`sce fit --config X --run runs/exp1` writes everything of the run under runs/exp1: it sets
`trainer.default_root_dir` and every logger's `save_dir` (the shipped configs pin both to the
same folder, so `--trainer.default_root_dir` alone would leave the logs behind). Lightning then
writes the log folder runs/exp1/tensorboard/version_N with config.yaml, checkpoints/
(last.ckpt and the best ones), metrics.json and evaluations/ (GenerationEvaluation) and the
TensorBoard events.

`sce fit --run runs/exp1 --resume [--trainer.max_epochs=20 ...]` continues that run from its
last.ckpt (always the latest state: sce.models.checkpointing.LastCheckpoint) with its saved
config first, in the same log folder (the same TensorBoard curves, no version_1). It refuses a
config whose model settings or window differ from the run's (`RESUME_FIXED`).

`sce test --run runs/exp1 [--ckpt best|last]` finds that log folder (the newest one with a
config.yaml), runs its config on its checkpoint and writes the test results into the same log
folder, next to the training ones.

What a log folder holds is read by one reader, `sce.evaluate.run_folder.RunFolder`, shared with
`sce report` and `sce sweep`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sce.evaluate.run_folder import CONFIG_FILE, RunFolder, RunFolderError, log_dirs, read_yaml

RUN_HELP = (
    "run folder: sets trainer.default_root_dir and every logger's save_dir (sce fit); the "
    "finished run whose config and checkpoint to use (sce validate/test/predict)"
)
CKPT_CHOICES = ("best", "last")


def set_run_folder(config: Any, run: str) -> None:
    """Point a parsed `sce fit` config (jsonargparse Namespace) at `run`: the trainer's
    default_root_dir and the save_dir of every logger given as class_path/init_args."""
    config.trainer.default_root_dir = run
    for logger in _loggers(config):
        logger.init_args.save_dir = run


def resume_run_folder(config: Any, run: str) -> None:
    """Point a parsed `sce fit --run RUN --resume` config at RUN's newest log folder (its
    TensorBoard version, checkpoints/ and evaluations/ continue there) and drop the flag, so
    the config.yaml saved there is a recipe that starts a run, not one that resumes."""
    aim_loggers_at(config, find_log_dir(run))
    config.resume = False


def aim_loggers_at(config: Any, log_dir: Path) -> None:
    """Make the config's loggers write into an existing log folder `log_dir`
    (save_dir/name/version), so a test's results land beside the run's training results."""
    for logger in _loggers(config):
        logger.init_args.save_dir = str(log_dir.parent.parent)
        logger.init_args.name = log_dir.parent.name
        logger.init_args.version = log_dir.name
    config.trainer.default_root_dir = str(log_dir.parent.parent)


def _loggers(config: Any) -> list[Any]:
    loggers = config.trainer.get("logger")
    if loggers is None or isinstance(loggers, bool):
        return []
    if not isinstance(loggers, list):
        loggers = [loggers]
    return [lg for lg in loggers if lg.get("init_args") is not None]


def find_log_dir(run: str | Path) -> Path:
    """The newest log folder of a run folder: `run` itself when it holds config.yaml, else the
    most recently written config.yaml up to two levels down (tensorboard/version_N)."""
    root = Path(run).expanduser()
    if not root.is_dir():
        raise RunFolderError(f"--run: folder not found: {root}")
    found = log_dirs(root, CONFIG_FILE)
    if not found:
        raise RunFolderError(
            f"--run {root}: no {CONFIG_FILE} in it or two levels down; is it the folder "
            "sce fit --run wrote (or its trainer.default_root_dir)?"
        )
    if found[0] == root:
        return root
    return max(found, key=lambda d: (d / CONFIG_FILE).stat().st_mtime)


def find_checkpoint(log_dir: Path, which: str = "best") -> Path:
    """The `--ckpt best|last` checkpoint of a log folder (RunFolder.checkpoint)."""
    if which not in CKPT_CHOICES:
        raise RunFolderError(f"--ckpt must be one of {CKPT_CHOICES}, got {which!r}")
    return RunFolder(log_dir).checkpoint(which)


def resolve_run_arguments(subcommand: str, args: list[str]) -> list[str]:
    """`sce validate|test|predict --run DIR [--ckpt best|last] ...` as LightningCLI arguments:
    the run's config first (later flags override it), its checkpoint as --ckpt_path unless one
    is given. `--run` stays (SceCLI aims the loggers at the run's log folder). `sce fit --run
    DIR --resume ...`: see `resume_arguments`."""
    run = _option(args, "--run")
    if subcommand == "fit" and _option(args, "--ckpt") is not None:
        raise RunFolderError(
            "--ckpt best|last is for sce validate/test/predict; to continue a run give "
            "sce fit --run RUN --resume"
        )
    if RESUME_FLAG in args:
        return resume_arguments(subcommand, run, args)
    if subcommand == "fit" or run is None:
        if _option(args, "--ckpt") is not None:
            raise RunFolderError("--ckpt best|last needs --run DIR (sce validate/test/predict)")
        return args
    log_dir = find_log_dir(run)
    which = _option(args, "--ckpt") or "best"
    args = _without(args, "--ckpt")
    extra = ["--config", str(log_dir / CONFIG_FILE)]
    if _option(args, "--ckpt_path") is None:
        extra += ["--ckpt_path", str(find_checkpoint(log_dir, which))]
    return extra + args


RESUME_FLAG = "--resume"
RESUME_HELP = (
    "sce fit --run RUN --resume: continue RUN from its last.ckpt with its saved config, in its "
    "log folder"
)
# What a resumed run must keep: every model.* setting (Lightning replaces them with the
# checkpoint's hyper_parameters, so a changed one would be dropped without a word) and what one
# sample is (the window). Anything else (trainer.max_epochs, data.num_workers, ...) may change.
RESUME_FIXED = ("model", "data.window")


def resume_arguments(subcommand: str, run: str | None, args: list[str]) -> list[str]:
    """`sce fit --run RUN --resume ...` as LightningCLI arguments: RUN's saved config first
    (later flags override it), its last.ckpt as --ckpt_path and `--resume=true` (SceCLI aims the
    loggers at RUN's log folder: `resume_run_folder`). Refused, naming the fix: another
    subcommand, no --run, a --ckpt_path."""
    if subcommand != "fit":
        raise RunFolderError(f"{RESUME_FLAG} is for sce fit --run RUN")
    if run is None:
        raise RunFolderError(f"{RESUME_FLAG} needs --run RUN (the run folder to continue)")
    if _option(args, "--ckpt_path") is not None:
        raise RunFolderError(
            f"{RESUME_FLAG} continues from the run's last.ckpt; drop --ckpt_path (or start a new "
            "run: sce fit --config X --run NEW --ckpt_path PATH)"
        )
    log_dir = find_log_dir(run)
    checkpoint = find_checkpoint(log_dir, "last")
    overrides = _without(_without_flag(args, RESUME_FLAG), "--run")
    config = ["--config", str(log_dir / CONFIG_FILE)]
    return [*config, *overrides, "--run", run, "--resume=true", "--ckpt_path", str(checkpoint)]


def check_resumable(saved: Path, given: dict[str, Any]) -> None:
    """Raise RunFolderError when `given` (the resumed run's config, dumped as config.yaml is)
    changes a `RESUME_FIXED` setting of the run's config.yaml `saved`: the resumed run would not
    be that run (its checkpoint would not load, or its samples would be other ones)."""
    recipe = read_yaml(saved)
    if not isinstance(recipe, dict):
        raise RunFolderError(f"{saved}: not a config (no mapping)")
    for key in _fixed_keys(recipe, given):
        was, now = _dotted(recipe, key), _dotted(given, key)
        if was != now:
            raise RunFolderError(
                f"{RESUME_FLAG}: {key} is {now!r} here but {was!r} in {saved}; a resumed run "
                "keeps its model settings and window (start a new run with another --run)"
            )


def _fixed_keys(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """`RESUME_FIXED` with a section (a mapping) spelled out as its keys, for the message."""
    keys = []
    for key in RESUME_FIXED:
        was, now = _dotted(saved, key), _dotted(given, key)
        if isinstance(was, dict) and isinstance(now, dict) and key == "model":
            keys += [f"{key}.{name}" for name in sorted(set(was) | set(now))]
        else:
            keys.append(key)
    return keys


def _dotted(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _without_flag(args: list[str], flag: str) -> list[str]:
    return [arg for arg in args if arg != flag]


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _without(args: list[str], name: str) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


# ---------------------------------------------------------------------------- messages


def start_message(trainer: Any) -> str:
    """Where this fit writes: the run folder and the log folder inside it."""
    return (
        f"sce fit: run folder {trainer.default_root_dir}; config, checkpoints, evaluations and "
        f"TensorBoard logs in {trainer.log_dir}"
    )


def fit_summary(trainer: Any) -> str:
    """After fit: the checkpoints, the last validation metrics and the commands to run next."""
    run = trainer.default_root_dir
    lines = [f"sce fit: done; run folder {run} (log folder {trainer.log_dir})"]
    from sce.models.checkpointing import last_checkpoint

    best = last = None
    checkpoint, latest = trainer.checkpoint_callback, last_checkpoint(trainer)
    if checkpoint is not None:
        best = checkpoint.best_model_path or None
        last = (latest or checkpoint).last_model_path or None
        score = checkpoint.best_model_score
        monitored = f" ({checkpoint.monitor} {float(score):.4f})" if score is not None else ""
        lines.append(f"checkpoints: best {best or '-'}{monitored}; last {last or '-'}")
    table = _metrics_table(trainer, "val")
    if table:
        lines += ["last validation evaluation (generated answers):", table]
    lines.append("next:")
    lines.append(f"  sce test --run {run} --ckpt best      # test split, results into the run")
    if last:
        lines.append(f"  sce fit --run {run} --resume [--trainer.max_epochs=N]   # continue it")
    if best or last:
        lines.append(f"  sce export --checkpoint {best or last} --out {run}/export")
    lines.append(f"  sce report {run} --paper 000|001|002|003   # the paper's tables")
    return "\n".join(lines)


def evaluation_summary(trainer: Any, split: str) -> str:
    """After validate/test: the compact table and where the results were written."""
    table = _metrics_table(trainer, split)
    where = trainer.log_dir or trainer.default_root_dir
    if not table:
        return (
            f"sce: no generation evaluation ran (no GenerationEvaluation callback); logs in {where}"
        )
    return (
        f"{split} evaluation (generated answers):\n{table}\n"
        f"wrote {Path(where) / 'metrics.json'} and {Path(where) / 'evaluations'}/"
    )


def _metrics_table(trainer: Any, split: str) -> str | None:
    from sce.evaluate.callback import GenerationEvaluation
    from sce.evaluate.figures import compact_table

    for callback in trainer.callbacks:
        if isinstance(callback, GenerationEvaluation) and split in callback.last:
            return compact_table({"": callback.last[split].scalars})
    return None
