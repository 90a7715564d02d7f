"""The `sce` subcommands that live in their own modules, and the one rule that keeps
`sce --help` light: a command's module is imported (and its options built) only when that
command runs. `sce --help`, `sce synth --help` and `sce data --help` list names and help lines
from the tables below and import neither torch nor the command modules.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """A subcommand whose module defines `add_<stem>_arguments(parser)` and
    `<stem>_command(args) -> int` (stem defaults to the name)."""

    name: str
    module: str
    help: str
    stem: str = ""

    def configure(self, parser: argparse.ArgumentParser, rest: Sequence[str] = ()) -> Handler:
        """Import the module, add its options to `parser`, return its handler."""
        module = importlib.import_module(self.module)
        stem = self.stem or self.name
        getattr(module, f"add_{stem}_arguments")(parser)
        return getattr(module, f"{stem}_command")


DATA_COMMANDS: tuple[Command, ...] = (
    Command("init", "sce.prepare.sources.private", "write an empty own-data layout: folders, labels.csv, README.txt"),
    Command("prepare", "sce.prepare.sources", "convert a dataset to a manifest"),
    Command("validate", "sce.train.checks", "check every record of a manifest (--config X: as sce fit would use it)"),
    Command("chunk", "sce.prepare.chunking", "cut long videos into short clips"),
    Command("cache", "sce.train.prefill", "decode a config's windows into its cache"),
    Command("preview", "sce.train.preview", "what the model sees for one sample (--config X [--data.x=...] --id ID)"),
    Command("mine-events", "sce.prepare.mining", "candidate event windows from long recordings", "mine"),
)  # fmt: skip

PASS_THROUGH_DATA_COMMANDS = frozenset({"validate", "preview"})


@dataclass(frozen=True)
class DataCommand(Command):
    """`sce data <sub>`: the subcommands of DATA_COMMANDS, each configured only when it runs."""

    def configure(self, parser: argparse.ArgumentParser, rest: Sequence[str] = ()) -> Handler:
        data_sub = parser.add_subparsers(dest="data_command", required=True)
        chosen = rest[0] if rest else None
        handlers: dict[str, Handler] = {}
        for command in DATA_COMMANDS:
            # their unknown options go on to the `sce fit` parser (--data.x / --model.x)
            abbrev = command.name not in PASS_THROUGH_DATA_COMMANDS
            p = data_sub.add_parser(command.name, help=command.help, allow_abbrev=abbrev)
            if chosen is None or chosen == command.name:
                handlers[command.name] = command.configure(p)
        if "prepare" in handlers:
            from sce.prepare.sources.layouts import prepare_epilog

            prepare = data_sub.choices["prepare"]
            prepare.epilog, prepare.formatter_class = (
                prepare_epilog(),
                argparse.RawDescriptionHelpFormatter,
            )
        return lambda args: handlers[args.data_command](args)


COMMANDS: tuple[Command, ...] = (
    DataCommand("data", "", "init (own-data layout), prepare (convert), chunk, validate, cache or preview"),
    Command("label", "sce.labeling.pipeline", "teacher pseudo-labels into annotations"),
    Command("export", "sce.deploy.export", "adapter checkpoint -> PEFT adapter + merged model folders"),
    Command("infer", "sce.deploy.infer", "event class, collision probability and description of a clip"),
    Command("budget", "sce.train.budget", "frames, visual/text tokens and sequence length of a config"),
    Command("plan", "sce.train.plan", "predicted peak GPU memory per device of one training step of a config"),
    Command("sweep", "sce.studies.sweep", "run every variant (or grid point) of an ablation YAML"),
    Command("report", "sce.evaluate.paper_tables", "a paper's tables from run folders, markdown and CSV"),
    Command("compare", "sce.evaluate.compare", "runs side by side: metrics and the config keys that differ"),
)  # fmt: skip
