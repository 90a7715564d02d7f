"""`sce export`: turn an adapter-only training checkpoint into model folders others can load.

    sce export --checkpoint runs/x/checkpoints/last.ckpt --out runs/x/export [--model-path BASE]

writes

    OUT/adapter/   PEFT adapter (adapter_config.json + adapter_model.safetensors), for
                   `PeftModel.from_pretrained(base, OUT/adapter)` or `sce infer --adapter`;
                   trainable weights outside the adapters (vision tower / merger when the run
                   trained them) go to `non_lora_trainable.safetensors` next to it.
    OUT/merged/    the adapters merged into the base weights (`merge_and_unload`), saved with the
                   processor: a plain model folder for `AutoModelForImageTextToText` /
                   `AutoProcessor.from_pretrained`, vision tower and merger included.
    OUT/export.json  where it came from (checkpoint, base, mode, step).

Both model folders get `sce_training.json` (sce.train.record): the run's window settings and
trained tasks from the checkpoint's `datamodule_hyper_parameters`, which `sce infer` uses by
default. A checkpoint saved without a datamodule has none; export.json then says so.

The module is rebuilt from the checkpoint's `hyper_parameters` (base = `model_path` unless
`--model-path` overrides it, e.g. when the base lives elsewhere on this machine). The base must
be the one the checkpoint was trained on: its config and a sample of its weight files are
compared with the identity the checkpoint recorded (sce.models.base_identity) before any weights
load, and another base, or none at that path any more, is refused naming `--model-path`. The
adapter weights are loaded and checked (every trainable parameter must be in the checkpoint), and each
folder is written to a temporary sibling first and renamed into place. QLoRA checkpoints are
exported onto the unquantized base (the LoRA weights are the same; merging needs real weights).
NEFTune and gradient checkpointing are training-only and are switched off.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NON_LORA_FILE = "non_lora_trainable.safetensors"


class ExportError(ValueError):
    """The checkpoint cannot be exported; the message names the file and the field."""


@dataclass
class ExportResult:
    out_dir: str
    adapter: str | None  # None for "full" fine-tuning (no adapters)
    merged: str
    base_model: str
    finetuning: str
    global_step: int | None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint with `hyper_parameters` and `state_dict` (weights_only load)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"--checkpoint: file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ExportError(f"{path}: not a readable checkpoint: {err}") from err
    for field in ("hyper_parameters", "state_dict"):
        if not isinstance(checkpoint.get(field), dict):
            raise ExportError(f"{path}: field {field!r} is missing: not an SceModule checkpoint")
    if "model_path" not in checkpoint["hyper_parameters"]:
        raise ExportError(f"{path}: field 'hyper_parameters.model_path' is missing")
    return checkpoint


def export_hparams(
    hparams: dict[str, Any], model_path: str | None = None, dtype: str | None = None
) -> dict[str, Any]:
    """SceModule arguments for export: training-only features off, QLoRA as plain LoRA."""
    from sce.models.module import SceModule

    accepted = set(inspect.signature(SceModule.__init__).parameters) - {"self"}
    out = {k: v for k, v in hparams.items() if k in accepted}
    if model_path:
        out["model_path"] = model_path
    if dtype:
        out["dtype"] = dtype
    out["neftune_alpha"] = 0.0
    out["gradient_checkpointing"] = False
    if out.get("finetuning") == "qlora":
        out["finetuning"] = "lora"
    return out


def module_from_checkpoint(
    checkpoint: str | Path | dict[str, Any],
    model_path: str | None = None,
    dtype: str | None = None,
    where: str = "checkpoint",
):
    """SceModule rebuilt from a checkpoint's hparams, base loaded, adapter weights restored.

    The base (`model_path`, default the checkpoint's) must be the one the checkpoint recorded
    (sce.models.base_identity); it is checked before it is loaded, so a base that moved away
    or was replaced is refused naming `--model-path`."""
    from sce.models.checkpointing import check_trainable_keys
    from sce.models.module import SceModule, recorded_load_dtype, restore_load_dtype

    if not isinstance(checkpoint, dict):
        where, checkpoint = str(checkpoint), read_checkpoint(checkpoint)
    hparams = checkpoint["hyper_parameters"]
    # The dtype the run loaded its base in (recorded at fit), not "auto" resolved on this machine.
    dtype = dtype or recorded_load_dtype(checkpoint)
    arguments = export_hparams(hparams, model_path, dtype)
    arguments["model_path"] = check_base(checkpoint, arguments["model_path"], where)
    module = SceModule(**arguments)
    module.configure_model()
    state = checkpoint["state_dict"]
    check_trainable_keys(module, state, where)
    module.load_state_dict(state, strict=False)
    restore_load_dtype(module.model, module.load_dtype)  # fp32 masters: training only
    module.model.eval()
    return module


def check_base(checkpoint: dict[str, Any], model_path: str, where: str) -> str:
    """The local path of the base `model_path` (a `tiny:SEED` spec resolved), after checking it
    is the base the checkpoint was trained on; raises BaseModelMismatchError naming
    --model-path when it is not, or when no model is there any more."""
    from sce.models.base_identity import BASE_IDENTITY_KEY, base_identity, check_base_identity
    from sce.train.assets import resolve_model_path

    path = str(resolve_model_path(model_path))
    recorded = checkpoint.get(BASE_IDENTITY_KEY)
    # an absolute path is a folder, never a hub id: checked even by a checkpoint without a record
    local = Path(path).is_absolute()
    check_base_identity(recorded, base_identity(path), path, "--model-path", where, local)
    return path


def _write_folder(target: Path, write: Callable[[Path], None], overwrite: bool) -> Path:
    """Write into a temporary sibling folder, then rename it to `target`."""
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def non_lora_trainable(model) -> dict[str, Any]:
    """Trainable weights outside the LoRA/DoRA layers, under the base model's names."""
    return {
        name.removeprefix("base_model.model."): p.detach().cpu().contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad and "lora_" not in name
    }


def _save_adapter(model, folder: Path) -> None:
    from safetensors.torch import save_file

    model.save_pretrained(folder)
    extra = non_lora_trainable(model)
    if extra:
        save_file(extra, str(folder / NON_LORA_FILE))


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    model_path: str | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write OUT/adapter (PEFT), OUT/merged (model + processor) and OUT/export.json."""
    from transformers import AutoProcessor

    from sce.train.assets import resolve_model_path

    ckpt = read_checkpoint(checkpoint)
    from sce.train.record import training_record, write_training_record

    mode = ckpt["hyper_parameters"].get("finetuning")
    data_hparams = ckpt.get("datamodule_hyper_parameters")
    record = training_record(data_hparams) if isinstance(data_hparams, dict) else None

    def with_record(save: Callable[[Path], None]) -> Callable[[Path], None]:
        def write(folder: Path) -> None:
            save(folder)
            if record is not None:
                write_training_record(folder, record)

        return write

    if mode == "none":
        raise ExportError(f"{checkpoint}: finetuning 'none' trained nothing; nothing to export")
    module = module_from_checkpoint(ckpt, model_path, dtype, where=str(checkpoint))
    base = resolve_model_path(module.hparams.model_path)
    out = Path(out_dir)
    adapter_dir = None
    model = module.model
    if hasattr(model, "merge_and_unload"):  # PEFT: adapter folder first, merging changes weights
        adapter_dir = _write_folder(
            out / "adapter", with_record(lambda d: _save_adapter(model, d)), overwrite
        )
        model = model.merge_and_unload()
    processor = AutoProcessor.from_pretrained(base)

    def save_merged(folder: Path) -> None:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    merged_dir = _write_folder(out / "merged", with_record(save_merged), overwrite)
    result = ExportResult(
        out_dir=str(out),
        adapter=str(adapter_dir) if adapter_dir else None,
        merged=str(merged_dir),
        base_model=str(base),
        finetuning=str(mode),
        global_step=ckpt.get("global_step"),
    )
    info = {
        **asdict(result),
        "checkpoint": str(Path(checkpoint).resolve()),
        "training_record": (
            record.to_json()
            if record
            else "none: the checkpoint has no datamodule_hyper_parameters"
        ),
    }
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    return result


# ---------------------------------------------------------------------------- CLI


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="Lightning .ckpt of an SceModule run")
    parser.add_argument("--out", required=True, help="output folder (adapter/, merged/)")
    parser.add_argument(
        "--model-path",
        default=None,
        help="base model folder or hub id (default: the checkpoint's model_path)",
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype of the export (default: the training run's)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing folders")


def export_command(args: argparse.Namespace) -> int:
    from sce.models.checkpointing import CheckpointMismatchError

    try:
        result = export_checkpoint(
            args.checkpoint, args.out, args.model_path, args.dtype, args.overwrite
        )
    except (ExportError, CheckpointMismatchError) as err:
        print(f"sce export: {err}")
        return 2
    if result.adapter:
        print(f"adapter: {result.adapter}")
    print(f"merged model: {result.merged}")
    return 0


__all__ = [
    "ExportError",
    "ExportResult",
    "add_export_arguments",
    "check_base",
    "export_checkpoint",
    "export_command",
    "export_hparams",
    "module_from_checkpoint",
    "non_lora_trainable",
    "read_checkpoint",
]
