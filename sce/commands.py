"""Registry of the `sce` subcommands that live in their own modules.

Each entry is (name, register) where register(subparsers) adds its parser(s) and returns
{command name: handler(args) -> exit code}. Imports stay inside the functions so `sce --help`
is fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

REGISTRY: list[tuple[str, Callable[[argparse._SubParsersAction], dict[str, Handler]]]] = []


def _data(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    from sce.data.chunking import add_chunk_arguments, chunk_command
    from sce.data.mining import add_mine_arguments, mine_command
    from sce.data.prefill import add_cache_arguments, cache_command
    from sce.data.preview import add_preview_arguments, preview_command
    from sce.data.sources import add_prepare_arguments, prepare_command
    from sce.data.sources.layouts import prepare_epilog
    from sce.data.sources.private import add_init_arguments, init_command
    from sce.data.validate import add_validate_arguments, validate_command

    data = sub.add_parser(
        "data", help="init (own-data layout), prepare (convert), chunk, validate, cache or preview"
    )
    data_sub = data.add_subparsers(dest="data_command", required=True)
    add_prepare_arguments(
        data_sub.add_parser(
            "prepare",
            help="convert a dataset to a manifest",
            epilog=prepare_epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    add_init_arguments(
        data_sub.add_parser(
            "init", help="write an empty own-data layout: folders, labels.csv, README.txt"
        )
    )
    add_validate_arguments(
        data_sub.add_parser(
            "validate",
            help="check every record of a manifest (--config X: as sce fit would use it)",
            allow_abbrev=False,  # so --data.x / --model.x overrides pass through untouched
        )
    )
    add_chunk_arguments(data_sub.add_parser("chunk", help="cut long videos into short clips"))
    add_cache_arguments(
        data_sub.add_parser("cache", help="decode a config's windows into its cache")
    )
    add_preview_arguments(
        data_sub.add_parser(
            "preview",
            help="what the model sees for one sample (--config X [--data.x=...] --id ID)",
            allow_abbrev=False,  # so --data.x / --model.x overrides pass through untouched
        )
    )
    add_mine_arguments(
        data_sub.add_parser("mine-events", help="candidate event windows from long recordings")
    )
    handlers = {
        "mine-events": mine_command,
        "prepare": prepare_command,
        "init": init_command,
        "validate": validate_command,
        "chunk": chunk_command,
        "cache": cache_command,
        "preview": preview_command,
    }
    return {"data": lambda args: handlers[args.data_command](args)}


REGISTRY.append(("data", _data))


# Single-parser subcommands: (name, module, help). Each module defines
# `add_<name>_arguments(parser)` and `<name>_command(args) -> int`.
SIMPLE_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("label", "sce.labeling.pipeline", "teacher pseudo-labels into annotations"),
    ("export", "sce.export", "adapter checkpoint -> PEFT adapter + merged model folders"),
    ("infer", "sce.infer", "event class, collision probability and description of a clip"),
    ("budget", "sce.budget", "frames, visual/text tokens and sequence length of a config"),
    ("plan", "sce.plan", "predicted peak GPU memory per device of one training step of a config"),
    ("sweep", "sce.sweep", "run every variant of an ablation YAML"),
    ("report", "sce.report", "a paper's tables from run folders, markdown and CSV"),
)


def _simple(name: str, module_name: str, help_text: str):
    def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
        import importlib

        module = importlib.import_module(module_name)
        getattr(module, f"add_{name}_arguments")(sub.add_parser(name, help=help_text))
        return {name: getattr(module, f"{name}_command")}

    return register


REGISTRY.extend(
    (name, _simple(name, module, help_text)) for name, module, help_text in SIMPLE_COMMANDS
)
