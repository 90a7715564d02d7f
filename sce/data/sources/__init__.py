"""Converters from public and private dataset layouts to the canonical manifest.

Every converter has the signature::

    convert_<name>(root, out_manifest, split=None, seed=0, val_fraction=0.05,
                   test_fraction=0.05, *, skip_missing=False, **source_options)
        -> ConversionReport

and writes `out_manifest` with paths relative to its folder. `prepare` dispatches by name
through `SOURCES`; `add_prepare_arguments` / `prepare_command` are the CLI
`sce data prepare --source nexar --root DIR --out manifest.jsonl [--skip-missing]`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sce.data.schema import SPLITS, load_manifest
from sce.data.sources.base import ConversionReport, SourceError, finish
from sce.data.sources.bddx import convert_bddx
from sce.data.sources.comma2k19 import convert_comma2k19
from sce.data.sources.gopro import convert_gopro
from sce.data.sources.lingoqa import convert_lingoqa
from sce.data.sources.nexar import convert_nexar, convert_nexar_hf
from sce.data.sources.private import convert_private

__all__ = [
    "SOURCES",
    "ConversionReport",
    "SourceError",
    "add_prepare_arguments",
    "convert_bddx",
    "convert_comma2k19",
    "convert_gopro",
    "convert_lingoqa",
    "convert_nexar",
    "convert_nexar_hf",
    "convert_private",
    "convert_synthetic",
    "prepare",
    "prepare_command",
]


def convert_synthetic(
    root: str | Path,
    out_manifest: str | Path,
    split: str | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    *,
    skip_missing: bool = False,
    clips: int = 60,
    **generator_options: Any,
) -> ConversionReport:
    """Generate a synthetic dataset into `root` and write its manifest to `out_manifest`.

    The generator (`sce.data.synthetic.generate_synthetic_dataset`) assigns stratified splits;
    `val_fraction`/`test_fraction` become its `split_fractions` when given, `split` overrides
    them all. Other keyword options (duration, fps, width, height, preset, progress) go to the
    generator. `skip_missing` is accepted for a uniform signature; nothing can be missing.
    """
    from sce.data.synthetic import generate_synthetic_dataset  # heavy (PyAV); only when used

    del skip_missing
    if val_fraction is not None or test_fraction is not None:
        val, test = val_fraction or 0.0, test_fraction or 0.0
        generator_options["split_fractions"] = (round(1.0 - val - test, 12), val, test)
    generated = generate_synthetic_dataset(Path(root), clips=clips, seed=seed, **generator_options)
    records = load_manifest(generated, check_files=True)
    for record in records:  # absolute paths: finish() makes them relative to out_manifest
        for name in ("video", "imu", "gps"):
            path = record.path(name)
            setattr(record, name, None if path is None else str(path))
    report = ConversionReport("synthetic", Path(out_manifest))
    return finish(records, report, split=split, seed=seed, val_fraction=0.0, test_fraction=0.0)


SOURCES: dict[str, Callable[..., ConversionReport]] = {
    "nexar": convert_nexar,
    "nexar_hf": convert_nexar_hf,
    "bddx": convert_bddx,
    "lingoqa": convert_lingoqa,
    "private": convert_private,
    "synthetic": convert_synthetic,
    "comma2k19": convert_comma2k19,
    "gopro": convert_gopro,
}


def _check_options(source: str, converter: Callable[..., Any], opts: dict[str, Any]) -> None:
    params = inspect.signature(converter).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n in params if n not in ("root", "out_manifest")]
    for key in opts:
        if key not in names:
            raise ValueError(f"source {source!r} has no option {key!r}; its options: {names}")


def prepare(source: str, root: str | Path, out: str | Path, **opts: Any) -> ConversionReport:
    """Convert `root` (a `source` layout) into the manifest `out`; options go to the converter."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(SOURCES)}")
    converter = SOURCES[source]
    _check_options(source, converter, opts)
    return converter(Path(root), Path(out), **opts)


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def add_prepare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `sce data prepare` arguments to `parser` (returned for chaining)."""
    parser.add_argument("--source", required=True, choices=sorted(SOURCES), help="dataset layout")
    parser.add_argument(
        "--root", required=True, type=Path, help="dataset folder (LingoQA: or a parquet)"
    )
    parser.add_argument("--out", required=True, type=Path, help="manifest.jsonl to write")
    parser.add_argument(
        "--split", choices=SPLITS, default=None, help="give every record this split"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment")
    parser.add_argument("--val-fraction", type=float, default=None, help="default 0.05")
    parser.add_argument("--test-fraction", type=float, default=None, help="default 0.05")
    parser.add_argument(
        "--skip-missing", action="store_true", help="count and skip entries whose files are missing"
    )
    parser.add_argument(
        "--option",
        "-o",
        dest="options",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="source option, e.g. subset=test-public, video_ext=.mp4, clips=12 (VALUE as JSON if it parses)",
    )
    return parser


def prepare_command(args: argparse.Namespace) -> int:
    """Run `sce data prepare` from parsed arguments; print the summary; 0 on success, 2 on a
    data or option error (message on stderr)."""
    opts: dict[str, Any] = {
        "split": args.split,
        "seed": args.seed,
        "skip_missing": args.skip_missing,
    }
    for name in ("val_fraction", "test_fraction"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    opts.update(dict(args.options))
    try:
        report = prepare(args.source, args.root, args.out, **opts)
    except (ValueError, OSError) as err:
        print(f"sce data prepare: error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0
