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
    from sce.data.sources import add_prepare_arguments, prepare_command
    from sce.data.validate import add_validate_arguments, validate_command

    data = sub.add_parser("data", help="prepare (convert), chunk or validate a manifest")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    add_prepare_arguments(data_sub.add_parser("prepare", help="convert a dataset to a manifest"))
    add_validate_arguments(data_sub.add_parser("validate", help="check every record of a manifest"))
    add_chunk_arguments(data_sub.add_parser("chunk", help="cut long videos into short clips"))
    handlers = {"prepare": prepare_command, "validate": validate_command, "chunk": chunk_command}
    return {"data": lambda args: handlers[args.data_command](args)}


REGISTRY.append(("data", _data))


def _label(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    from sce.labeling.pipeline import add_label_arguments, label_command

    add_label_arguments(sub.add_parser("label", help="teacher pseudo-labels into annotations"))
    return {"label": label_command}


REGISTRY.append(("label", _label))


def _export(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    from sce.export import add_export_arguments, export_command

    add_export_arguments(
        sub.add_parser("export", help="adapter checkpoint -> PEFT adapter + merged model folders")
    )
    return {"export": export_command}


REGISTRY.append(("export", _export))


def _infer(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    from sce.infer import add_infer_arguments, infer_command

    add_infer_arguments(
        sub.add_parser("infer", help="event class, collision probability and description of a clip")
    )
    return {"infer": infer_command}


REGISTRY.append(("infer", _infer))


def _budget(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    from sce.budget import add_budget_arguments, budget_command

    add_budget_arguments(
        sub.add_parser("budget", help="frames, visual/text tokens and sequence length of a config")
    )
    return {"budget": budget_command}


REGISTRY.append(("budget", _budget))


def _sweep(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    from sce.sweep import add_sweep_arguments, sweep_command

    add_sweep_arguments(sub.add_parser("sweep", help="run every variant of an ablation YAML"))
    return {"sweep": sweep_command}


REGISTRY.append(("sweep", _sweep))
