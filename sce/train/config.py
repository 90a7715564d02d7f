"""The one config path: every command that reads an experiment YAML reads it here.

`sce fit|validate|test|predict`, `sce budget`, `sce plan`, `sce sweep`, `sce data cache|validate|
preview` all resolve `--config X.yaml [--data.window.fps=15 ...]` with the same LightningCLI parser
over SceModule, SceDataModule and the Trainer: the same defaults, types, links
(`model.model_path` -> `data.processor_path`) and validation. Resolving a config builds no model,
data module or trainer (`sce budget` loads no weights).

The parser reads plain YAML (jsonargparse's default mode) on every machine: omegaconf is not a
dependency of sce and no experiment config uses interpolation.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

OVERRIDE_SYNTAX = "--KEY=VALUE after the config, e.g. --data.window.fps=15 (the syntax of sce fit)"


def sce_cli_class():
    """LightningCLI over SceModule and SceDataModule with sce's links and `--run` option."""
    from lightning.pytorch.cli import LightningCLI

    from sce.train import assets, runs

    class SceCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("model.model_path", "data.processor_path")
            parser.add_argument("--run", type=str | None, default=None, help=runs.RUN_HELP)
            parser.add_argument("--resume", type=bool, default=False, help=runs.RESUME_HELP)

        def before_instantiate_classes(self) -> None:
            from sce.models.checkpointing import refuse_url

            config = self.config[self.subcommand] if self.subcommand else self.config
            refuse_url(config.get("ckpt_path") or "")  # before any model, data or download
            run = config.get("run")
            if not run:
                return
            if self.subcommand == "fit" and config.get("resume"):
                runs.resume_run_folder(config, run)
            elif self.subcommand == "fit":
                runs.set_run_folder(config, run)
            else:
                runs.aim_loggers_at(config, runs.find_log_dir(run))

        def _parse_ckpt_path(self) -> None:
            """Lightning replaces the model settings with the ckpt_path's hyper_parameters here:
            `sce fit --run RUN --resume` first compares the given config with RUN's, so a
            changed model or window is refused instead of silently dropped."""
            subcommand = self.config.get("subcommand")
            config = self.config.get(subcommand) if subcommand == "fit" else None
            if config is not None and config.get("resume") and config.get("run"):
                saved = runs.find_log_dir(config.run) / runs.CONFIG_FILE
                dump = self._parser(subcommand).dump(config, skip_none=False, skip_validation=True)
                runs.check_resumable(saved, yaml.safe_load(dump))
            super()._parse_ckpt_path()

        def instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            with assets.resolved_specs(config):  # tiny:/synthetic: specs become paths here
                super().instantiate_classes()

        def instantiate_trainer(self, **kwargs):
            """The trainer, with sce's checkpoint IO whatever trainer.plugins held (a list
            there replaces the default that carries it)."""
            from sce.models.checkpointing import secure_checkpoint_io

            trainer = super().instantiate_trainer(**kwargs)
            secure_checkpoint_io(trainer.strategy)
            return trainer

        def before_fit(self) -> None:
            say(runs.start_message(self.trainer))

        def after_fit(self) -> None:
            say(runs.fit_summary(self.trainer))

        def before_predict(self) -> None:  # answers go to <log dir>/predictions.jsonl
            from sce.evaluate.predictions import PredictionFileWriter

            self.trainer.callbacks.append(PredictionFileWriter())

        # Lightning's own results dump (one row per logged scalar, ~180 here) is replaced by
        # the compact table of the generation metrics.
        def validate(self, **kwargs) -> None:
            self.trainer.validate(**{**kwargs, "verbose": False})
            say(runs.evaluation_summary(self.trainer, "val"))

        def test(self, **kwargs) -> None:
            self.trainer.test(**{**kwargs, "verbose": False})
            say(runs.evaluation_summary(self.trainer, "test"))

    return SceCLI


def say(text: str) -> None:
    """Print on rank zero only."""
    from lightning.pytorch.utilities import rank_zero_only

    if text and rank_zero_only.rank == 0:
        print(text, flush=True)


def lightning_cli_kwargs(subcommand: str = "fit") -> dict:
    """The LightningCLI arguments of every sce command (one parser mode everywhere: yaml)."""
    from sce.data.datamodule import SceDataModule
    from sce.models.module import SceModule

    # fit's config.yaml is the run's recipe; other commands save theirs beside it under their
    # own name instead of overwriting it
    config_file = "config.yaml" if subcommand == "fit" else f"config_{subcommand}.yaml"
    return {
        "model_class": SceModule,
        "datamodule_class": SceDataModule,
        # SceModule.configure_optimizers builds AdamW + the scheduler from model.* settings:
        # LightningCLI's --optimizer / --lr_scheduler would be silently ignored, so they are off
        "auto_configure_optimizers": False,
        "save_config_kwargs": {"overwrite": True, "config_filename": config_file},
        # Our re-sampler shards across ranks itself; checkpoints are written atomically (a
        # trainer.plugins list replaces this default: instantiate_trainer puts the IO back).
        "trainer_defaults": {
            "use_distributed_sampler": False,
            "plugins": [{"class_path": "sce.models.checkpointing.AtomicCheckpointIO"}],
        },
    }


def _parsed_cli(args: list[str], build_datamodule: bool = False):
    """LightningCLI run=False over `args` that instantiates nothing (or the data module only)
    and leaves the global seed alone: parsing, defaults, links and validation only."""

    class ConfigOnlyCLI(sce_cli_class()):
        def _set_seed(self) -> None:  # reading a config must not reseed the caller's RNGs
            pass

        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            if build_datamodule:
                from sce.train.assets import resolved_specs

                with resolved_specs(self.config.clone()) as config:
                    self.datamodule = self.datamodule_class(**config.data.as_dict())

    with warnings.catch_warnings():  # `args` is the caller's own slice of sys.argv
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:  # a bad key or value raises (as a ConfigError) instead of exiting
            return ConfigOnlyCLI(
                args=args,
                run=False,
                parser_kwargs={"exit_on_error": False},
                **lightning_cli_kwargs(),
            )
        except argparse.ArgumentError as err:
            raise ConfigError(f"{_source(args)}: {err}{_moved_window_hint(str(err))}") from err


# The window's settings were flat data.* keys before `data.window` held them all.
MOVED_WINDOW_KEYS = {
    **{name: f"window.{name}" for name in ("fps", "before", "after", "width", "height")},
    **{name: f"window.{name}" for name in ("layout", "max_frames", "max_pixels")},
    "telemetry_anchor": "window.telemetry_anchor",
    "window_scales": "window.scales",
}


def _moved_window_hint(message: str) -> str:
    """A note naming the new key when a parser error names an old flat window key (a config
    written before `data.window`, or `--data.fps=15`)."""
    for old, new in MOVED_WINDOW_KEYS.items():
        if f"data.{old}=" in message or f"data.{old} " in message or f"option '{old}'" in message:
            return f" (data.{old} moved to data.{new}: the window is one value, data.window)"
    if 'key "data.window"' in message:  # the old data.window: event|whole
        return (
            " (data.window is the window's settings now; the old data.window is data.window.mode)"
        )
    return ""


class ConfigError(ValueError):
    """A config (file or override) the `sce fit` parser rejects; names the file and the key."""


def _source(args: Sequence[str]) -> str:
    """The config file named in `args` (or 'config' when it was given inline)."""
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--config":
            return value if "\n" not in value else "config"
    return "config"


def _config_argument(config: str | Path | Mapping[str, Any]) -> str:
    """A config path as given, or a parsed config as a YAML string (jsonargparse reads both)."""
    if isinstance(config, Mapping):
        return yaml.safe_dump(dict(config), sort_keys=False)
    return str(config)


def resolve_config(
    config: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The config `sce fit --config CONFIG *overrides` would run, as a plain dict: every
    default filled in, links applied, types checked. `config` is a YAML path or a mapping
    with the sections of one; `overrides` are `--data.window.fps=15` style arguments."""
    cli = _parsed_cli(["--config", _config_argument(config), *overrides])
    # the YAML LightningCLI saves as a run's config.yaml (plain lists and strings), read back
    resolved = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False, skip_validation=True))
    resolved.pop("config", None)  # the path(s) it was read from, not a setting
    return resolved


def datamodule_from_cli(args: list[str]):
    """The SceDataModule that `sce fit` builds from the same arguments (`--config X`,
    `--data.manifest=M`, ...): the same parser, defaults and links, without building the model
    or the trainer (`sce data preview` shows what this data module feeds the model)."""
    return _parsed_cli(args, build_datamodule=True).datamodule


class _ReplacedOption(argparse.Action):
    """An option that no longer exists: fails with the syntax that replaced it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(f"{option_string} was removed; override config values with {OVERRIDE_SYNTAX}")


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """`--config X.yaml` plus `--data.window.fps=15` style overrides (collected by `sce.cli.main` into
    `args.config_overrides`). The old `--set KEY=VALUE` fails with the new syntax."""
    parser.add_argument(
        "--config",
        required=required,
        help=f"experiment YAML; override values with {OVERRIDE_SYNTAX}",
    )
    add_override_arguments(parser)


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """Let `--data.window.fps=15` style arguments through to `args.config_overrides` (sce.cli.main
    collects them); the removed `--set KEY=VALUE` fails naming the new syntax."""
    parser.add_argument("--set", action=_ReplacedOption, help=argparse.SUPPRESS)
    parser.allow_abbrev = False  # so --data.x / --model.x overrides pass through untouched
    parser.set_defaults(config_overrides=[])


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The dotted keys of `--data.window.fps=15` / `--data.window.fps 15` style arguments."""
    return [arg[2:].partition("=")[0] for arg in overrides if arg.startswith("--")]


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """{"data.window.fps": 15} -> ['--data.window.fps=15']: strings as they are (the parser types them as
    its own command line would), other values as JSON (which it reads as YAML)."""
    import json

    return [
        f"--{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in values.items()
    ]
