"""`sce data validate`: a manifest checked alone (`sce.prepare.validate`), or with `--config` as
`sce fit` would use it: the config's own SceDataModule (its window, task weights and loader) is
built here, in the config layer, and handed to the checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from sce.prepare.validate import validate_manifest


def add_validate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = (
        "Check every record of a manifest. With --config, check it as `sce fit` would use it: "
        "arguments other than these go to the `sce fit` parser (--data.manifest=M, "
        "--data.window.fps=5)."
    )
    parser.add_argument("manifest", nargs="?", help="manifest.jsonl (default with --config: "
                        "the config's data.manifest)")  # fmt: skip
    parser.add_argument(
        "--config", default=None, help="experiment YAML: check what `sce fit` would do with it"
    )
    parser.add_argument("--before", type=float, default=None, help="seconds before the event")
    parser.add_argument("--after", type=float, default=None, help="seconds after the event")
    parser.add_argument("--fps", type=float, default=None, help="window frame rate")
    parser.add_argument("--no-decode", action="store_true", help="skip decoding test frames")
    parser.set_defaults(config_overrides=[])
    return parser


def validate_command(args: argparse.Namespace) -> int:
    datamodule = None
    window = {"before": args.before, "after": args.after, "fps": args.fps}
    config, overrides = getattr(args, "config", None), getattr(args, "config_overrides", [])
    if config:
        if any(value is not None for value in window.values()):
            print("sce data validate: with --config, set the window as sce fit does "
                  "(--data.window.before=..., --data.window.after=..., --data.window.fps=...)")  # fmt: skip
            return 2
        datamodule = config_datamodule(config, args.manifest, overrides)
        spec = datamodule.window
        window = {"before": spec.before, "after": spec.after, "fps": spec.fps}
        manifest = datamodule.manifest
    elif overrides:
        print(f"sce data validate: unrecognized arguments (without --config): "
              f"{' '.join(overrides)}")  # fmt: skip
        return 2
    else:
        manifest = args.manifest
        window = {k: v for k, v in window.items() if v is not None}  # else validate's defaults
    if not manifest or not Path(manifest).is_file():
        print(f"manifest not found: {manifest}")
        return 2
    report = validate_manifest(manifest, decode=not args.no_decode, datamodule=datamodule, **window)
    print("\n".join(text for text in (report.overview(), report.table()) if text))
    return 0 if report.ok else 1


def config_datamodule(config: str, manifest: str | None, overrides: list[str]):
    """The SceDataModule `sce fit --config CONFIG [overrides]` builds (sce.train.config's parser); a
    positional manifest is `--data.manifest=MANIFEST` (so `--data.manifest M` works as well)."""
    from sce.train.config import datamodule_from_cli

    overrides = list(overrides)
    if manifest is not None:
        overrides = [o for o in overrides if o != "--data.manifest"]
        overrides.append(f"--data.manifest={manifest}")
    return datamodule_from_cli(["--config", config, *overrides])
