"""Converters from public and private dataset layouts to the canonical manifest.

Every converter is a record generator::

    <name>_records(ctx: SourceContext, *, **source_options) -> Iterator[SourceRecord]

and `prepare(source, root, out, split=None, seed=0, val_fraction=None, test_fraction=None, *,
skip_missing=False, **source_options)` drives one through `SOURCES`: it owns the split options,
the duplicate-id check and the manifest writing (paths relative to its folder).
`convert_<name>(root, out, ...)` is `prepare` bound to one source. `add_prepare_arguments` /
`prepare_command` are the CLI
`sce data prepare --source nexar --root DIR --out manifest.jsonl [--skip-missing]`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from sce.data.schema import SPLITS, load_manifest
from sce.prepare.sources.base import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    ConversionReport,
    SourceContext,
    SourceError,
    SourceRecord,
    check_split,
    check_unique_ids,
    fill_splits,
    write_records,
)
from sce.prepare.sources.bddx import bddx_records
from sce.prepare.sources.comma2k19 import comma2k19_records
from sce.prepare.sources.gopro import gopro_records
from sce.prepare.sources.lingoqa import lingoqa_records
from sce.prepare.sources.nexar import nexar_hf_records, nexar_records
from sce.prepare.sources.private import private_records
from sce.prepare.splits import empty_split_warning, split_fractions_asked

__all__ = [
    "SOURCES",
    "ConversionReport",
    "SourceContext",
    "SourceError",
    "SourceRecord",
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


def synthetic_records(
    ctx: SourceContext, *, clips: int = 60, **generator_options: Any
) -> Iterator[SourceRecord]:
    """Generate a synthetic dataset into `root`; its records keep the generator's splits.

    The generator (`sce.prepare.synthetic.generate_synthetic_dataset`) assigns stratified splits;
    `val_fraction`/`test_fraction` become its `split_fractions` when given. Other keyword options
    (duration, fps, width, height, preset, progress) go to the generator. Nothing can be missing.
    """
    from sce.prepare.synthetic import generate_synthetic_dataset  # heavy (PyAV); only when used

    if ctx.val_fraction is not None or ctx.test_fraction is not None:
        # one fraction given: the other is 0 here (prepare's empty-split warning reads them back)
        ctx.val_fraction, ctx.test_fraction = ctx.val_fraction or 0.0, ctx.test_fraction or 0.0
        train = round(1.0 - ctx.val_fraction - ctx.test_fraction, 12)
        generator_options["split_fractions"] = (train, ctx.val_fraction, ctx.test_fraction)
    generated = generate_synthetic_dataset(
        ctx.root, clips=clips, seed=ctx.seed, **generator_options
    )
    for line, record in enumerate(load_manifest(generated, check_files=True), start=1):
        for name in ("video", "imu", "gps"):  # absolute: prepare makes them relative to out
            path = record.path(name)
            setattr(record, name, None if path is None else str(path))
        yield SourceRecord(record, f"{generated} line {line}")


SOURCES: dict[str, Callable[..., Iterator[SourceRecord]]] = {
    "nexar": nexar_records,
    "nexar_hf": nexar_hf_records,
    "bddx": bddx_records,
    "lingoqa": lingoqa_records,
    "private": private_records,
    "synthetic": synthetic_records,
    "comma2k19": comma2k19_records,
    "gopro": gopro_records,
}


def _check_options(source: str, generator: Callable[..., Any], opts: dict[str, Any]) -> None:
    params = inspect.signature(generator).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in opts:
        if key not in names:
            raise ValueError(f"source {source!r} has no option {key!r}; its options: {names}")


def prepare(
    source: str,
    root: str | Path,
    out: str | Path,
    split: str | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    *,
    skip_missing: bool = False,
    **options: Any,
) -> ConversionReport:
    """Convert `root` (a `source` layout) into the manifest `out`.

    Args:
        source: a name of `SOURCES`.
        root, out: the dataset (folder or file) and the manifest to write.
        split: give every record this split; None keeps the source's own splits and assigns
            the missing ones, seeded and stratified by label (`fill_splits`).
        seed, val_fraction, test_fraction: that assignment (fractions default to 0.05 each;
            the synthetic generator uses its own 60/20/20 unless they are given).
        skip_missing: count and skip entries whose files are missing instead of raising.
        options: the source's own keyword options (`sce data prepare -o KEY=VALUE`).

    Raises SourceError on bad source data and on a repeated record id (naming both records).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(SOURCES)}")
    generator = SOURCES[source]
    _check_options(source, generator, options)
    if split is not None:
        check_split(split, "argument", "split")
    report = ConversionReport(source, Path(out))
    ctx = SourceContext(
        Path(root), Path(out), report, split, seed, val_fraction, test_fraction, skip_missing
    )
    try:
        records = list(generator(ctx, **options))
        check_unique_ids(records, source)
    except BaseException:  # no orphan outputs of a conversion that stopped
        ctx.discard_staged()
        raise
    ctx.commit_staged()
    # read back: a generator that splits its own records says with which fractions
    val = DEFAULT_VAL_FRACTION if ctx.val_fraction is None else ctx.val_fraction
    test = DEFAULT_TEST_FRACTION if ctx.test_fraction is None else ctx.test_fraction
    if split is not None:
        for item in records:
            item.record.split = split
    fill_splits(records, seed, val, test)
    write_records(records, report)
    if split is None:  # a forced split empties the others on purpose
        per_split = Counter(item.record.split for item in records)
        if warning := empty_split_warning(per_split, split_fractions_asked(val, test)):
            report.warnings.append(warning)
    return report


convert_nexar = partial(prepare, "nexar")
convert_nexar_hf = partial(prepare, "nexar_hf")
convert_bddx = partial(prepare, "bddx")
convert_lingoqa = partial(prepare, "lingoqa")
convert_private = partial(prepare, "private")
convert_synthetic = partial(prepare, "synthetic")
convert_comma2k19 = partial(prepare, "comma2k19")
convert_gopro = partial(prepare, "gopro")


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
        "--skip-missing",
        action="store_true",
        help="count and skip entries whose files are missing (comma2k19, gopro: or unreadable, "
        "or telemetry short of the video), each named in the summary",
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
