"""Adapter-only checkpoints that are written atomically and resume a run exactly.

What a checkpoint holds (the one adapter-state API: this module)
    `SceModule.on_save_checkpoint` keeps the trainable parameters only (`adapter_only`), so a
    DoRA checkpoint of a 7B model is megabytes; the frozen base is reloaded from
    `hyper_parameters["model_path"]`. Optimizer, LR scheduler and loop state are Lightning's.
    `strict_loading=False` lets Lightning load such a partial state dict, which would also let a
    checkpoint of another mode/targets/rank load *nothing* without a word:
    `SceModule.on_load_checkpoint` (and `AdapterModelParallelStrategy` under FSDP2) call
    `check_trainable_keys`, which raises unless every trainable parameter is in the checkpoint.
    Keys are `clean_parameter_name`s (no FSDP1 / checkpoint-wrapper / compile prefixes);
    `gather_trainable_state_dict` builds the same adapter-only state from a live (also FSDP2-
    sharded) model. sce.models.distributed uses these; this module imports nothing from it.

Writing
    `AtomicCheckpointIO` (`Trainer(plugins=[AtomicCheckpointIO()])`) writes to a temporary file
    in the checkpoint's own folder, fsyncs it and `os.replace`s it over the target: a crash
    mid-write leaves the previous checkpoint intact, never a truncated one. (Lightning's default
    goes through an fsspec transaction whose temporary file lives in the system temp folder, so
    the final move can be a cross-device copy.) A process killed mid-write (kill -9) leaves its
    checkpoint-sized temporary behind; `StaleTemporaryCleaner` removes those of the run's
    checkpoint folders at fit start. Loads are weights-only, and http(s) paths are refused.
    That holds whatever `trainer.plugins` a config gives (a list there replaces the trainer
    default that carries AtomicCheckpointIO): `CheckpointIOGuard`, one of SceModule's own
    callbacks, puts it back on the strategy before Lightning restores a `ckpt_path`; the FSDP
    strategies, which read checkpoint files themselves, go through `load_weights_only`; and
    `sce fit|validate|test|predict` refuse an http(s) ckpt_path before building anything.

last.ckpt is the latest state
    `LastCheckpoint` writes last.ckpt at the end of every training epoch and at every step
    another checkpoint callback saved at; `LastCheckpointGuard` (one of `resume_callbacks()`)
    gives every fitting trainer that checkpoints one, whatever its callbacks list holds, and
    turns off the other callbacks' `save_last` (Lightning 2.6 re-saves it only with a new
    top-k checkpoint). `sce fit --run RUN --resume` (sce.train.runs) resumes from it.

Exact mid-epoch resume (`resume_callbacks()`)
    - `SamplerStateCallback` (sce.data.sampling) stores the ClassResampler's position, so the
      resumed epoch yields exactly the samples not yet trained on.
    - Per-sample randomness (IMU dropout, question choice) is seeded by the sampler: each
      index it yields carries a seed that is a pure function of (data.seed, epoch,
      position in the epoch) (`sce.data.sampling.SampleIndex`), so a sample's prompt does not
      depend on which DataLoader worker builds it, on the number of workers, or on a resume.
      The DataLoaders draw their workers' base seeds from their own generator, never from the
      global one.
    - `RNGStateCallback` stores torch (CPU and CUDA), numpy and Python `random` states, which
      Lightning does not checkpoint: NEFTune noise (and adapter dropout) come from torch's
      global generator in the training process, so without it a resumed run draws other
      noise. The state is restored in `on_train_start`. Validation and the sanity check are
      made RNG-neutral: the state from before them is put back afterwards, so evaluating does
      not change training draws.
    - `EpochAggregatesCallback` stores the running epoch aggregates of the training logs
      (train/loss_epoch, data/train_* counts, ...) and folds them back after a mid-epoch
      resume, so the resumed epoch logs the values of the uninterrupted run.
    Resumed step losses and epoch values are bitwise those of the uninterrupted run, with
    `num_workers=0` or any number of workers, for a checkpoint in the middle or at the end of
    an epoch (tests/models/test_checkpoint_resume.py), on the same machine and world size.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from sce.common.files import atomic_file

# Prefixes that wrappers insert into parameter names (FSDP1, activation checkpointing, compile).
_WRAPPER_PREFIXES = re.compile(r"(?:_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")


class CheckpointMismatchError(ValueError):
    """A checkpoint does not hold the trainable parameters of the model it is loaded into."""


# ---------------------------------------------------------------------------- state dicts


def clean_parameter_name(name: str) -> str:
    """A parameter name without FSDP1 / checkpoint-wrapper / torch.compile prefixes."""
    return _WRAPPER_PREFIXES.sub("", name)


def trainable_keys(module: torch.nn.Module) -> list[str]:
    """State-dict names (wrapper prefixes removed) of the module's trainable parameters."""
    return [clean_parameter_name(n) for n, p in module.named_parameters() if p.requires_grad]


def adapter_only(module: torch.nn.Module, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `state_dict` that are trainable parameters of `module`."""
    keep = set(trainable_keys(module))
    return {k: v for k, v in state_dict.items() if clean_parameter_name(k) in keep}


def check_trainable_keys(
    module: torch.nn.Module,
    state_dict: Mapping[str, Any] | Iterable[str],
    where: Any = "checkpoint",
) -> None:
    """Raise CheckpointMismatchError unless every trainable parameter of `module` is in
    `state_dict` and every entry of `state_dict` is a parameter or buffer of `module`."""
    keys = {clean_parameter_name(k) for k in state_dict}
    expected = set(trainable_keys(module))
    missing = sorted(expected - keys)
    known = {clean_parameter_name(k) for k, _ in module.named_parameters()}
    known |= {clean_parameter_name(k) for k, _ in module.named_buffers()}
    unknown = sorted(keys - known)
    hint = "was it saved with the same finetuning mode, targets and rank?"
    if missing:
        raise CheckpointMismatchError(
            f"{where}: field 'state_dict' lacks {len(missing)} of the model's {len(expected)} "
            f"trainable parameters, e.g. {missing[:3]}; {hint}"
        )
    if unknown:
        raise CheckpointMismatchError(
            f"{where}: field 'state_dict' has {len(unknown)} parameters the model lacks, e.g. "
            f"{unknown[:3]}; {hint}"
        )


def gather_trainable_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU copies of the trainable parameters, under clean names: the
    adapter-only state a checkpoint holds (load it back with `check_trainable_keys` and
    `module.load_state_dict(state, strict=False)`, as `SceModule.on_load_checkpoint` does).

    Collective under FSDP2: every rank must call it (each DTensor is gathered in turn).
    """
    from torch.distributed.tensor import DTensor

    out: dict[str, torch.Tensor] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        tensor = param.detach()
        if isinstance(tensor, DTensor):
            tensor = tensor.full_tensor()
        out[clean_parameter_name(name)] = tensor.to("cpu", copy=True)
    return out


class NonFiniteWeightsError(FloatingPointError):
    """A checkpoint would hold NaN or infinite weights: it is not written."""


def require_finite(state_dict: Mapping[str, Any]) -> None:
    """Raise NonFiniteWeightsError naming the first floating tensor of `state_dict` that holds
    a NaN or an infinity: such a checkpoint would resume or export a broken model."""
    for name, value in state_dict.items():
        local = value.to_local() if hasattr(value, "to_local") else value  # a DTensor's shard
        if torch.is_tensor(local) and local.is_floating_point() and not local.isfinite().all():
            bad = int((~local.isfinite()).sum())
            raise NonFiniteWeightsError(
                f"refusing to save a checkpoint: parameter {clean_parameter_name(name)!r} holds "
                f"{bad} non-finite value(s) of {local.numel()}"
            )


# ---------------------------------------------------------------------------- atomic writes


def _is_local(path: str | Path) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


TEMPORARY_GLOB = ".*.tmp"  # atomic_file's temporaries: ".<name>.<random>.tmp"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file next to `path`, fsync, then os.replace onto `path`
    (`sce.common.files.atomic_file`)."""
    path = Path(str(path).removeprefix("file://"))
    with atomic_file(path, "wb") as handle:
        torch.save(obj, handle)
    return path


class CheckpointSourceError(ValueError):
    """A checkpoint path this project refuses to load from (an HTTP(S) URL)."""


def refuse_url(path: Any) -> None:
    """Raise CheckpointSourceError for an http(s):// checkpoint path.

    Lightning fetches such a path with torch.hub's downloader, unpickles it with
    weights_only=False unless told otherwise (code in the file runs) and caches it by file
    name (a later URL ending in the same name silently loads the old file). Refusing is the
    simpler safe choice: loading safely from a URL would need our own downloader, size limits
    and cache keys, while downloading the file yourself keeps its origin visible.
    """
    text = str(path)
    if text.split("://", 1)[0].lower() in ("http", "https"):
        raise CheckpointSourceError(
            f"ckpt_path {text!r}: checkpoints are not loaded from HTTP(S) URLs (Lightning would "
            "unpickle the download with weights_only=False and cache it by file name). Download "
            "the file, check its origin, and pass the local path."
        )


def load_weights_only(path: str | Path, **kwargs: Any) -> Any:
    """torch.load of a local or fsspec checkpoint path with weights_only=True (tensors and plain
    containers: no code in the file runs); HTTP(S) URLs are refused (`refuse_url`). The one
    load of sce's strategies that read checkpoint files without a CheckpointIO."""
    refuse_url(path)
    return torch.load(path, map_location="cpu", weights_only=True, **kwargs)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic (temporary file + os.replace), and whose
    loads are weights-only (tensors and plain containers: no code runs), from local or fsspec
    paths; HTTP(S) URLs are refused (`refuse_url`).

    Remote saves (s3://, gs://, ...) go through Lightning's default writer.
    """

    def load_checkpoint(
        self, path, *args: Any, weights_only: bool | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Lightning's load with `weights_only=True` whatever was asked (`fit(weights_only=...)`
        or Lightning's remote default False)."""
        refuse_url(path)
        return super().load_checkpoint(path, *args, weights_only=True, **kwargs)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, path)


class CheckpointIOError(ValueError):
    """trainer.plugins holds a checkpoint IO that would replace sce's AtomicCheckpointIO."""


def secure_checkpoint_io(strategy: Any) -> None:
    """Make `strategy` save and load through AtomicCheckpointIO, whatever trainer.plugins held.

    A `trainer.plugins` list in a config replaces the trainer defaults' list (LightningCLI), so
    AtomicCheckpointIO given as a default vanished with any other plugin and Lightning's
    TorchCheckpointIO then downloaded an http(s) ckpt_path and unpickled it with
    weights_only=False (issue 26.1). Lightning's own TorchCheckpointIO (also inside a wrapper
    such as AsyncCheckpointIO) is replaced; AtomicCheckpointIO and its subclasses are kept; any
    other CheckpointIO is refused, naming trainer.plugins.
    """
    from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

    io = strategy.checkpoint_io  # Lightning fills an unset one (or a wrapper's) with its default
    wrapper = io if isinstance(io, _WrappingCheckpointIO) else None
    inner = wrapper.checkpoint_io if wrapper is not None else io
    if isinstance(inner, AtomicCheckpointIO):
        return
    if type(inner) is not TorchCheckpointIO:
        raise CheckpointIOError(
            f"trainer.plugins: checkpoint IO {type(inner).__qualname__} would replace sce's "
            "AtomicCheckpointIO (atomic saves, weights-only loads, no HTTP(S) checkpoint "
            "paths); drop it from trainer.plugins or subclass "
            "sce.models.checkpointing.AtomicCheckpointIO"
        )
    if wrapper is None:
        strategy.checkpoint_io = AtomicCheckpointIO()
    else:  # the wrapper's setter only fills an empty slot; Lightning filled it already
        wrapper._checkpoint_io = AtomicCheckpointIO()


class CheckpointIOGuard(Callback):
    """Puts AtomicCheckpointIO on the trainer's strategy in `setup`, before Lightning restores
    any `ckpt_path` (`secure_checkpoint_io`): the safety of a load does not depend on a trainer
    default that a config can replace. SceModule adds it to every trainer it runs in."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        secure_checkpoint_io(trainer.strategy)


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt` as the run's latest state: written at the end of every training epoch (after
    its validation and the other checkpoint callbacks) and at any step another checkpoint
    callback saved at.

    Lightning 2.6's `save_last` re-saves last.ckpt only at a step where the same callback saved
    a top-k checkpoint: with `save_top_k: 1` and a metric that is logged every k epochs
    (`val_gen/*`) or stops improving, last.ckpt kept an early epoch (issue 27.1). Its dirpath
    is that of the checkpoint callback that asked for `save_last` (else Lightning's default,
    the log folder's checkpoints/), and it overwrites one last.ckpt (no last-v1.ckpt)."""

    def __init__(self, dirpath: str | Path | None = None) -> None:
        super().__init__(
            dirpath=dirpath, save_last=True, save_top_k=0, enable_version_counter=False
        )

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if _not_saving(trainer) or self._last_global_step_saved == step:
            return
        others = [c for c in trainer.checkpoint_callbacks if c is not self]
        if any(getattr(c, "_last_global_step_saved", None) == step for c in others):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not _not_saving(trainer):  # also at a step saved before: the epoch's end is later
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Nothing: the training epoch's end, after its validation, writes last.ckpt."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """last.ckpt's path only, and only in the same folder: a run resumed into another folder
        writes its own last.ckpt there (Lightning's version warns about the top-k state)."""
        if state_dict.get("dirpath") == self.dirpath:
            self.last_model_path = state_dict.get("last_model_path") or ""


def _not_saving(trainer: Trainer) -> bool:
    return (
        bool(trainer.fast_dev_run)
        or trainer.state.fn != TrainerFn.FITTING
        or trainer.sanity_checking
    )


def ensure_last_checkpoint(trainer: Trainer) -> LastCheckpoint | None:
    """Give a checkpointing trainer one `LastCheckpoint` (None when it checkpoints nothing),
    whatever its callbacks list holds: the checkpoint callbacks' own `save_last` is turned off
    (one writer of last.ckpt), the first one that asked for it lends its dirpath."""
    checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    present = [c for c in checkpoints if isinstance(c, LastCheckpoint)]
    if present or not checkpoints:
        return present[0] if present else None
    owners = [c for c in checkpoints if c.save_last]
    for callback in owners:
        callback.save_last = False
    last = LastCheckpoint(dirpath=owners[0].dirpath if owners else None)
    trainer.callbacks.append(last)  # last of all: after the other checkpoint callbacks
    return last


def last_checkpoint(trainer: Trainer) -> LastCheckpoint | None:
    """The trainer's LastCheckpoint, if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)


class LastCheckpointGuard(Callback):
    """Adds `LastCheckpoint` to a fitting trainer in `setup` (`ensure_last_checkpoint`);
    SceModule adds this guard to every trainer it runs in. Lightning's setup hook walks
    `trainer.callbacks` as a list, so the appended callback's own setup runs in the same pass,
    before a ckpt_path is restored."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:
            ensure_last_checkpoint(trainer)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries `atomic_torch_save` left in `folder` when a process died while
    writing (kill -9, power loss: its own cleanup never ran); returns what was removed. Call it
    before this run writes there: a temporary that exists then belongs to no live write."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(TEMPORARY_GLOB) if p.is_file() and _is_checkpoint_temp(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _is_checkpoint_temp(path: Path) -> bool:
    """ ".last.ckpt.k3j2h1.tmp": a checkpoint's temporary (not any hidden .tmp file)."""
    return f"{ModelCheckpoint.FILE_EXTENSION}." in path.name


class StaleTemporaryCleaner(Callback):
    """Rank 0 removes the crash leftovers of atomic checkpoint writes (each one
    checkpoint-sized, never removed otherwise): at fit start from every ModelCheckpoint folder
    of this run, and at train start (the checkpoint restored by then, under every strategy)
    from the folder of the checkpoint the run resumed from, which a resumed run writing into a
    new version folder would otherwise never visit."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for callback in trainer.checkpoint_callbacks:
            self._clean(trainer, getattr(callback, "dirpath", None))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        resumed = trainer.ckpt_path
        if resumed and _is_local(resumed):
            self._clean(trainer, Path(str(resumed).removeprefix("file://")).parent)

    @staticmethod
    def _clean(trainer: Trainer, folder: str | Path | None) -> None:
        if not trainer.is_global_zero or folder is None or not _is_local(folder):
            return
        removed = remove_stale_temporaries(str(folder).removeprefix("file://"))
        if removed:
            rank_zero_info(
                f"[sce] removed {len(removed)} stale checkpoint temporaries from {folder} "
                f"(left by a crash during a write): {[p.name for p in removed]}"
            )


# ---------------------------------------------------------------------------- RNG states


def collect_rng_states() -> dict[str, Any]:
    """torch CPU (+ CUDA when initialized), numpy and Python `random` states.

    Only tensors, lists and numbers, so checkpoints still load with `weights_only=True`.
    """
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what `collect_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    np_state = states["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    python = states["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(
                f"checkpoint has CUDA RNG states of {len(cuda)} devices, this machine has "
                f"{torch.cuda.device_count()}: CUDA random draws will differ",
                stacklevel=2,
            )


def _all_ranks(state: dict[str, Any]) -> list[dict[str, Any]]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, state)
    return gathered


class RNGStateCallback(Callback):
    """Save every rank's RNG states in checkpoints; restore them when training resumes.

    The state saved is the one at the end of the last training batch (validation and the
    sanity check run in between leave it untouched, see the module docstring). On
    `fit(ckpt_path=...)` each rank gets its own saved state back in `on_train_start`. A
    checkpoint from another world size restores nothing (with a warning).
    Under several processes `state_dict` is collective, as Lightning's checkpoint dump is.
    """

    def __init__(self) -> None:
        self._after_batch: dict[str, Any] | None = None  # state at the last train batch end
        self._held: dict[str, Any] | None = None  # training state put aside during evaluation
        self._pending: dict[str, Any] | None = None  # loaded, applied at train start

    def state_dict(self) -> dict[str, Any]:
        states = _all_ranks(self._held or collect_rng_states())
        return {"world_size": len(states), "ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict) if state_dict else None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.get("world_size") != trainer.world_size:
            warnings.warn(
                f"checkpoint RNG states are from {pending.get('world_size')} processes, this run "
                f"has {trainer.world_size}: random draws are not restored",
                stacklevel=2,
            )
            return
        set_rng_states(pending["ranks"][trainer.global_rank])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._after_batch = collect_rng_states()

    # Evaluation inside fit must not move the training random stream. The evaluation loop
    # creates its DataLoader iterator (one draw) before `on_validation_start`, so the state put
    # back is the one recorded at the end of the last training batch.
    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._held = collect_rng_states()

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._release()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._held = self._after_batch or collect_rng_states()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._release()

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            set_rng_states(held)


# ---------------------------------------------------------------------------- epoch aggregates

_META_FIELDS = (
    "fx",
    "name",
    "prog_bar",
    "logger",
    "on_step",
    "on_epoch",
    "enable_graph",
    "add_dataloader_idx",
    "dataloader_idx",
    "metric_attribute",
)


def _training_results(trainer: Trainer) -> Any:
    """The training loop's result collection (`self.log` values of training hooks), also while
    validation runs."""
    return trainer.fit_loop.epoch_loop._results


def collect_epoch_aggregates(results: Any) -> dict[str, dict[str, Any]]:
    """The running state of every epoch-level tensor value logged in this epoch so far: its
    `self.log` arguments, running value and (means) summed batch size. Tensors, strings,
    numbers and None only, so checkpoints still load with `weights_only=True`."""
    out = {}
    for key, metric in results.items():
        meta = metric.meta
        if not metric.is_tensor or not meta.on_epoch or metric.has_reset:
            continue
        entry = {field: getattr(meta, field) for field in _META_FIELDS}
        entry.update(
            reduce_fx=meta.reduce_fx.__name__,
            sync_dist=meta.sync.should,
            rank_zero_only=meta.sync.rank_zero_only,
            value=metric.value.detach().cpu().clone(),
        )
        if meta.is_mean_reduction:
            entry["cumulated_batch_size"] = metric.cumulated_batch_size.detach().cpu().clone()
        out[key] = entry
    return out


def _restored_metric(entry: Mapping[str, Any], trainer: Trainer) -> Any:
    """An empty result metric with the `self.log` arguments of `entry` (as LightningModule.log
    builds them, so a later log of the same value passes Lightning's same-arguments check)."""
    from lightning.pytorch.trainer.connectors.logger_connector.result import (
        _Metadata,
        _ResultMetric,
        _Sync,
    )

    meta = _Metadata(
        **{field: entry[field] for field in _META_FIELDS}, reduce_fx=entry["reduce_fx"]
    )
    meta.sync = _Sync(
        fn=trainer.strategy.reduce,
        _should=entry["sync_dist"],
        rank_zero_only=entry["rank_zero_only"],
    )
    return _ResultMetric(meta, is_tensor=True)


def merge_epoch_aggregates(
    results: Any, saved: Mapping[str, Mapping[str, Any]], trainer: Trainer
) -> None:
    """Fold the pre-resume running states `saved` (`collect_epoch_aggregates`) into `results`:
    a value logged since the resume is combined with its saved part as its reduction does
    (sum and mean: added; max, min), one not logged since is created from it."""
    for key, entry in saved.items():
        metric = results.get(key)
        if metric is None:
            metric = results[key] = _restored_metric(entry, trainer)
        device = metric.value.device
        value = entry["value"].to(device)
        if metric.meta.is_max_reduction or metric.meta.is_min_reduction:
            metric.value = metric.meta.reduce_fx(value, metric.value)
        else:  # sum, mean: a + b == b + a exactly, so one batch since the resume stays bitwise
            metric.value = metric.value + value
        if metric.meta.is_mean_reduction:
            size = entry["cumulated_batch_size"].to(device)
            metric.cumulated_batch_size = metric.cumulated_batch_size + size
        metric.has_reset = False
        metric._computed = None
        metric._update_count = max(metric._update_count, 1)  # "compute before update" warns


def epoch_values(saved: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The values an epoch's end logs from the running states `saved`
    (`collect_epoch_aggregates`): `<name>_epoch` for values also logged per step, `<name>` for
    epoch-only ones; means divided by their summed batch size, as Lightning computes them.
    Unsynced (each rank's own), as sce logs its training values."""
    out = {}
    for entry in saved.values():
        if not entry["logger"]:
            continue
        value = entry["value"]
        if entry["reduce_fx"] == "mean":  # in the value's dtype, as Lightning divides
            value = value / entry["cumulated_batch_size"]
        out[f"{entry['name']}_epoch" if entry["on_step"] else entry["name"]] = float(value)
    return out


@contextmanager
def _as_epoch(trainer: Trainer, epoch: int) -> Iterator[None]:
    """`trainer.current_epoch` reads `epoch` inside the block (what is logged and saved there
    is labelled with it), and its own value again after."""
    progress = trainer.fit_loop.epoch_progress.current
    shift = progress.completed - epoch
    progress.completed -= shift
    try:
        yield
    finally:
        progress.completed += shift


def finish_interrupted_epoch(trainer: Trainer, state: Mapping[str, Any]) -> list[str]:
    """Log what the end of epoch `state["epoch"]` would have logged, for a run resumed from a
    checkpoint written after that epoch's last training batch but before its end: the training
    epoch values from the saved aggregates and, when the epoch validates, its validation run
    again on the restored weights (val/*, the generation metrics, a monitored checkpoint), all
    at the checkpoint's step and labelled with that epoch. Returns what was logged, for the
    message."""
    epoch = state["epoch"]
    values = epoch_values(state["metrics"])
    with _as_epoch(trainer, epoch):
        trainer._logger_connector.log_metrics(values)  # Lightning's step and epoch fields
        loop = trainer.fit_loop.epoch_loop
        validates = trainer.enable_validation and loop._should_check_val_epoch()
        if validates:  # as the training loop runs its epoch-end validation
            trainer.validating = True
            loop.val_loop.run()
            trainer.training = True
    return sorted(values) + (["its validation (val/*)"] if validates else [])


class EpochAggregatesCallback(Callback):
    """Save the running epoch aggregates (the `_epoch` values of `self.log(on_epoch=True)` in
    training: train/loss_epoch, the data/train_* counts, ...) in checkpoints, and fold them back
    after a mid-epoch resume, so the resumed epoch logs the values of the uninterrupted run
    instead of those of its post-resume batches only.

    Lightning keeps these sums in the training loop's result collection, which it neither
    checkpoints nor lets be preset: its first log of each hook in a loop's first batch resets
    that hook's values. So the saved state is folded in at the end of the first training batch
    after the resume (its own logs done: merging one batch into the saved sum is exact), and
    only if that batch belongs to the saved epoch (a checkpoint from an epoch's end resumes with
    the next epoch). Every rank saves and gets back its own state; another world size restores
    nothing, with a warning. Values logged as torchmetrics objects keep their state in the
    module and are not covered.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None  # loaded, merged after the first batch
        self._trainer: Trainer | None = None
        self._ended_epoch: int | None = None  # the last epoch whose end began

    # Lightning runs ModelCheckpoint's hooks after every other callback's, so a checkpoint
    # saved in these hooks already sees the epoch's end as begun.
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loop = trainer.fit_loop.epoch_loop
        if trainer.state.fn == TrainerFn.FITTING and loop.batch_progress.is_last_batch:
            self._ended_epoch = trainer.current_epoch  # the end-of-epoch validation

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._ended_epoch = trainer.current_epoch

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A checkpoint written after epoch E's last training batch, before E's end (a run
        killed during E's validation), resumes with epoch E+1: Lightning would never log E's
        epoch values nor validate E. `finish_interrupted_epoch` does, and says so."""
        pending = self._pending
        if pending is None or pending.get("world_size") != trainer.world_size:
            return
        state = pending["ranks"][trainer.global_rank]
        if state["epoch"] >= trainer.current_epoch or state.get("ended", True):
            return
        self._pending = None
        done = finish_interrupted_epoch(trainer, state)
        rank_zero_warn(
            f"resumed at epoch {trainer.current_epoch} from a checkpoint written after epoch "
            f"{state['epoch']}'s last training batch, before that epoch ended (a run stopped "
            f"during its validation?): logged epoch {state['epoch']}'s {', '.join(done)} now "
            "(if the stopped run got past that epoch's end, these repeat its values)"
        )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = None

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None:
            return {}
        if self._pending is not None:  # saved before the first resumed batch ended
            return self._pending
        state = {
            "epoch": trainer.current_epoch,
            "metrics": collect_epoch_aggregates(_training_results(trainer)),
            # False: written before this epoch's end (its validation, its epoch-end logs)
            "ended": self._ended_epoch == trainer.current_epoch,
        }
        ranks = _all_ranks(state)
        return {"world_size": len(ranks), "ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict) if state_dict else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.get("world_size") != trainer.world_size:
            warnings.warn(
                f"checkpoint epoch aggregates are from {pending.get('world_size')} processes, "
                f"this run has {trainer.world_size}: this epoch's logged values cover the "
                "batches since the resume only",
                stacklevel=2,
            )
            return
        state = pending["ranks"][trainer.global_rank]
        if state["epoch"] == trainer.current_epoch:
            merge_epoch_aggregates(_training_results(trainer), state["metrics"], trainer)


def resume_callbacks() -> list[Callback]:
    """The checkpoint IO guard (weights-only loads, atomic saves, whatever trainer.plugins
    holds), the callbacks exact mid-epoch resume needs (sampler position, RNG states and the
    epoch aggregates), the cleaner of crashed checkpoint writes' temporaries, and the guard that
    keeps last.ckpt the latest state (LastCheckpoint)."""
    from sce.data.sampling import SamplerStateCallback

    return [
        CheckpointIOGuard(),
        LastCheckpointGuard(),
        SamplerStateCallback(),
        RNGStateCallback(),
        EpochAggregatesCallback(),
        StaleTemporaryCleaner(),
    ]


__all__ = [
    "AtomicCheckpointIO",
    "CheckpointIOError",
    "CheckpointIOGuard",
    "CheckpointMismatchError",
    "CheckpointSourceError",
    "EpochAggregatesCallback",
    "LastCheckpoint",
    "LastCheckpointGuard",
    "RNGStateCallback",
    "StaleTemporaryCleaner",
    "adapter_only",
    "atomic_torch_save",
    "check_trainable_keys",
    "clean_parameter_name",
    "collect_epoch_aggregates",
    "collect_rng_states",
    "ensure_last_checkpoint",
    "epoch_values",
    "finish_interrupted_epoch",
    "gather_trainable_state_dict",
    "last_checkpoint",
    "load_weights_only",
    "merge_epoch_aggregates",
    "refuse_url",
    "remove_stale_temporaries",
    "resume_callbacks",
    "secure_checkpoint_io",
    "set_rng_states",
    "trainable_keys",
]
