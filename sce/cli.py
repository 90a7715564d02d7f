"""The `sce` command.

`sce fit|validate|test|predict --config experiments/X.yaml` go through LightningCLI (the
resolved config is saved in the run folder). The other subcommands are plain argparse:

    sce demo                      synthetic data + tiny model, trained and evaluated end to end
    sce synth --out DIR           synthetic dashcam clips with IMU/GPS and a manifest
    sce tiny-model --out DIR      the offline tiny Qwen2.5-VL kit
    sce data init|prepare|chunk|validate|cache|mine-events  scaffold own data, convert
                                  datasets, cut long videos, check a manifest, fill a frame
                                  cache, find candidate events in unlabeled drives
    sce data preview --config X --id ID  what the model sees for one sample
    sce label ...                 teacher pseudo-labels
    sce export / sce infer        model folders / answers for one clip or a manifest split
    sce budget --config X         visual tokens and sequence length of a config
    sce plan --config X           peak GPU memory per device of one training step
    sce sweep ABLATION.yaml       run each variant of an ablation
    sce report RUN... --paper P   a paper's tables from run folders (markdown + CSV)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sce.common.known_warnings import (  # noqa: F401 (re-exported for tests and callers)
    ADVERTISEMENT_PREFIX,
    KNOWN_HARMLESS_WARNINGS,
    quiet_known_noise,
)

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
LIGHTNING_HELP = {
    "fit": "train a config (--config X.yaml [--run DIR]), or continue one (--run DIR --resume)",
    "validate": "validation metrics of a run's checkpoint (--run DIR [--ckpt best|last])",
    "test": "test metrics of a run's checkpoint on the whole test split (--run DIR [--ckpt])",
    "predict": "answers of a run's checkpoint (--run DIR [--ckpt best|last])",
}


def run_lightning_cli(args: list[str]):
    """LightningCLI over SceModule and SceDataModule; data.processor_path follows the model.

    `--run DIR` names the run folder (sce.train.runs): `sce fit` writes everything there, and
    `sce validate|test|predict --run DIR [--ckpt best|last]` take that run's config and
    checkpoint and write their results beside its training results."""
    from sce.train.runs import resolve_run_arguments

    subcommand, rest = args[0], resolve_run_arguments(args[0], list(args[1:]))
    return _sce_cli_class()(args=[subcommand, *rest], **_lightning_cli_kwargs(subcommand))


def _sce_cli_class():
    from sce.train.config import sce_cli_class

    return sce_cli_class()


def _lightning_cli_kwargs(subcommand: str = "fit") -> dict:
    from sce.train.config import lightning_cli_kwargs

    return lightning_cli_kwargs(subcommand)


def _synth(args: argparse.Namespace) -> int:
    from sce.data.schema import LABELS
    from sce.prepare.synthetic import SynthOptions, generate_synthetic_dataset

    fractions = args.class_fractions
    options = SynthOptions(
        brief_events=args.brief_events,
        telemetry_decides=args.telemetry_decides,
        driver_view=args.driver_view,
        class_fractions=dict(zip(LABELS, map(float, fractions.split(",")), strict=True))
        if fractions
        else None,
    )
    manifest = generate_synthetic_dataset(
        args.out,
        clips=args.clips,
        seed=args.seed,
        duration=args.duration,
        fps=args.fps,
        width=args.width,
        height=args.height,
        options=options,
    )
    print(f"wrote {manifest}")
    return 0


def _tiny_model(args: argparse.Namespace) -> int:
    from sce.models.tiny import build_tiny_kit

    print(f"wrote {build_tiny_kit(args.out, seed=args.seed)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sce.studies.demo import run_demo

    run_demo(out_dir=args.out, clips=args.clips, seed=args.seed)
    return 0


def _data_errors() -> tuple[type[Exception], ...]:
    """The errors sce.data raises for bad input; each message names the sample and file."""
    from sce.data.clip import ClipError
    from sce.data.collate import SequenceTooLongError
    from sce.data.imu import ImuError
    from sce.data.schema import ManifestError
    from sce.data.video import VideoError
    from sce.data.windows import WindowError

    return (ManifestError, ClipError, ImuError, VideoError, WindowError, SequenceTooLongError)


def _report_data_error(command: str, err: Exception) -> int:
    """Print a data error as its message plus where it was raised (exit 2); SCE_TRACEBACK=1
    re-raises it with the whole traceback."""
    import os
    import traceback

    if os.environ.get("SCE_TRACEBACK"):
        raise err
    frame = traceback.extract_tb(err.__traceback__)[-1]
    # An error raised in a DataLoader worker is re-raised with the worker's traceback in its
    # message; its last line is the original "module.ClassName: message".
    message = str(err).strip().splitlines()[-1] if "Original Traceback" in str(err) else str(err)
    print(f"sce {command}: data error ({type(err).__name__}): {message}", file=sys.stderr)
    print(
        f"  raised at {frame.filename}:{frame.lineno} in {frame.name}; "
        "SCE_TRACEBACK=1 shows the traceback",
        file=sys.stderr,
    )
    return 2


def build_parser(
    argv: list[str] | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    """The `sce` parser and its handlers. With `argv`, only the command it names gets its
    options (and imports its module): `sce --help` imports no command module and no torch."""
    parser = argparse.ArgumentParser(
        prog="sce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Callable] = {}

    p = sub.add_parser("demo", help="synthetic data + tiny model, trained and evaluated (CPU)")
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--clips", type=int, default=240, help="synthetic clips (default 240)")
    p.add_argument("--seed", type=int, default=0)
    handlers["demo"] = _demo

    p = sub.add_parser("synth", help="generate synthetic dashcam clips + IMU/GPS + manifest")
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=16.0, help="seconds per clip")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--brief-events", action="store_true", help="impacts visible for 0.3 s only")
    p.add_argument(
        "--telemetry-decides", action="store_true", help="near-collisions visible in the IMU only"
    )
    p.add_argument(
        "--class-fractions",
        help="train split's collision,near_collision,normal fractions (e.g. 0.02,0.15,0.83)",
    )
    p.add_argument(
        "--driver-view",
        action="store_true",
        help="add a driver-facing video and paper 003's events + instruction to every clip",
    )
    handlers["synth"] = _synth

    p = sub.add_parser("tiny-model", help="build the offline tiny Qwen2.5-VL kit")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    handlers["tiny-model"] = _tiny_model

    for name in LIGHTNING_COMMANDS:  # listed for --help; main() hands them to LightningCLI
        sub.add_parser(name, help=LIGHTNING_HELP[name], add_help=False)
    from sce.commands import COMMANDS

    chosen = argv[0] if argv else None
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help)
        if argv is None or chosen == command.name:
            handlers[command.name] = command.configure(p, argv[1:] if argv else ())
    return parser, handlers


# Known-harmless third-party warnings (regexes on the message), silenced so that the first lines
# of a run are sce's own: each was checked and does not affect results.
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_known_noise()  # imports nothing: filters by message and logger name
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from sce.models.checkpointing import (
            CheckpointIOError,
            CheckpointMismatchError,
            CheckpointSourceError,
        )
        from sce.train.config import ConfigError
        from sce.train.runs import RunFolderError

        try:
            run_lightning_cli(argv)
        except _data_errors() as err:  # bad data: the cause in a few lines, not ~30 frames
            return _report_data_error(argv[0], err)
        # a refused checkpoint or a misused --run / --ckpt: one line naming the fix
        except (
            CheckpointSourceError,
            CheckpointIOError,
            CheckpointMismatchError,
            ConfigError,
            RunFolderError,
        ) as err:
            print(f"sce {argv[0]}: {err}", file=sys.stderr)
            return 2
        return 0
    parser, handlers = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Only subcommands that pass arguments on to the `sce fit` parser take unknown ones
        # (`sce data preview --config X --data.manifest M`): they default `config_overrides`.
        if not hasattr(args, "config_overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.config_overrides = extra
    from sce.train.config import ConfigError

    try:
        return int(handlers[args.command](args) or 0)
    except ConfigError as err:  # rejected by the `sce fit` parser: file, key and reason
        print(f"sce {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
