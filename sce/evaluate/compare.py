"""`sce compare RUN...`: finished runs side by side, and the config keys that differ.

Each RUN is read as `sce report` reads it (`paper_tables.load_runs`, through `run_folder`): its
last test evaluation when it has one, else metrics.json (the latest, validation during fit); a
`sce demo` folder gives one run per stage. Printed: where each run's numbers come from (file,
split, step), the compact metrics table (sce.evaluate.figures.compact_table) with one column per
run and IMU setting, then the config keys (dotted, e.g. `model.rank`) whose values differ
between the runs, one column per run. Keys that only say where a run writes (LOCATION_KEYS)
differ between any two runs and are left out.

    sce compare runs/fps1 runs/fps3
    sce compare runs/sweeps/fps/fps1 runs/sweeps/fps/fps3 --name "1 fps" --name "3 fps"
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from sce.evaluate.figures import COMPACT_METRICS, compact_table, format_table
from sce.evaluate.paper_tables import ReportError, Run, load_runs
from sce.evaluate.run_folder import flat_config

LOCATION_KEYS = re.compile(
    r"^(ckpt_path|config|trainer\.default_root_dir"
    r"|trainer\.logger(\.\d+)?\.init_args\.(save_dir|name|version))$"
)
VALUE_WIDTH = 40  # a config value longer than this is cut ("...")
_ABSENT = object()


def unique_names(runs: Sequence[Run]) -> list[str]:
    """The runs' names, a repeated one numbered ("version_0", "version_0 (2)")."""
    seen: dict[str, int] = {}
    names = []
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
        names.append(run.name if seen[run.name] == 1 else f"{run.name} ({seen[run.name]})")
    return names


def differing_config(runs: Sequence[Run], names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per dotted config key whose value is not the same in every run (absent counts
    as a value, printed "-"), sorted by key; LOCATION_KEYS left out."""
    flats = [flat_config(run.config) for run in runs]
    keys = sorted({k for flat in flats for k in flat if not LOCATION_KEYS.match(k)})
    rows = []
    for key in keys:
        values = [flat.get(key, _ABSENT) for flat in flats]
        if any(v != values[0] for v in values[1:]):
            row = {"key": key}
            row |= {n: _text(v) for n, v in zip(names, values, strict=True)}
            rows.append(row)
    return rows


def _text(value: Any) -> str | None:
    if value is _ABSENT:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."


def compare_text(runs: Sequence[Run], metrics: Sequence[str] = COMPACT_METRICS) -> str:
    """What `sce compare` prints (see the module docstring)."""
    names = unique_names(runs)
    lines = ["runs:"] + [f"  {n}: {run.source}" for n, run in zip(names, runs, strict=True)]
    evaluations = {n: run.scalars for n, run in zip(names, runs, strict=True)}
    lines += ["", compact_table(evaluations, metrics, change=False), ""]
    if not any(run.config for run in runs):
        lines.append("config: none of the runs has a config.yaml or hparams.yaml")
    elif rows := differing_config(runs, names):
        lines += [f"config keys that differ ({len(rows)}):", format_table(rows, ["key", *names])]
    else:
        lines.append("config: the same in every run (run folder and logger paths aside)")
    return "\n".join(lines)


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folders",
        nargs="+",
        help="run folders (a `sce fit`/`sce test` run, its log dir, a sweep variant's folder; "
        "runs/demo gives one run per stage)",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        help="column name of the N-th folder (repeatable, in folder order; default: folder name)",
    )


def compare_command(args: argparse.Namespace) -> int:
    try:
        runs = load_runs(args.folders, args.name)
    except ReportError as err:
        print(f"sce compare: error: {err}", file=sys.stderr)
        return 2
    print(compare_text(runs))
    return 0
