"""Class re-sampling for imbalanced event data (papers 001 and 002), distributed and restartable.

Items are the dataset's training items, one per (record, task): a record trains each task it can
serve (its mcq item, its caption item, ...). Factors apply per (task, class):

- `{"mcq": {"collision": 15, "near_collision": 2}}` up-samples the *MCQ* items only (paper 001:
  "MCQ Data (Upsampled)" 11k / 14k / 43k, Table 1); the collision captions stay x1.
- A flat `{"normal": 1/3}` applies to every task (paper 002, whose only task is the
  probability: negatives down-sampled to a third). A task entry overrides the flat one.
- Classes are the items' own labels: a binary-scope record (Nexar) is "event" or "normal", so
  `{"normal": 1/3}` down-samples Nexar negatives and `{"collision": 15}` never touches a binary
  "event".

The expected count of a (task, class) group is n x task_weight x factor: task weights (the
dataset's `task_weights`) multiply the items of a task the same way (paper 001's "Reasoning MCQ
x2"). An integer count is exact in every epoch; a fractional one is rounded up or down per epoch
(seeded stochastic rounding) so its mean over epochs is exact and a small group (1 item, weight
0.25) still appears in a quarter of the epochs. `ClassResampler` builds each epoch from those
counts, shuffles it from (seed, epoch), splits it across ranks and can resume in the middle of
an epoch.

Every index it yields is a `SampleIndex`: the dataset index, carrying `draw_seed`, the seed of
that sample's random choices (IMU dropout, question choice), a pure function of (seed, epoch,
position in the epoch) (`draw_seed`). The dataset draws from it instead of a process's RNG, so
a sample's prompt is the same whichever worker builds it, however many workers there are, and
after a mid-epoch resume.

Using it with Lightning
-----------------------
- Pass the sampler to the training `DataLoader` (`sampler=...`) and create the Trainer with
  `use_distributed_sampler=False`: otherwise Lightning wraps it in a `DistributedSampler`, which
  would shard the already per-rank share a second time.
- Lightning calls `sampler.set_epoch(epoch)` at every epoch start (it looks for `set_epoch` on
  `dataloader.sampler` and `dataloader.batch_sampler.sampler`), so the order changes per epoch.
- Lightning 2.6 checkpoints the state of a *dataloader* only when the dataloader itself has
  `state_dict`/`load_state_dict` (e.g. torchdata's `StatefulDataLoader`); a plain `DataLoader`
  with a stateful sampler is ignored. Attach `SamplerStateCallback()` to the Trainer to save the
  sampler state in checkpoints and restore it on `fit(ckpt_path=...)`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from sce.common.choices import check_choice
from sce.data.schema import ALL_LABELS, LABELS, ClipRecord
from sce.data.subset import stable_seed
from sce.tasks import TASKS, task_names

ANY_TASK = "*"  # the task of items built without one (a plain list of labels)
# When the fractional part of a (task, class) count is drawn: "epoch" redraws which items (and,
# for a fractional count, how many) every epoch; "once" draws them once from the seed and keeps
# them, a down-sampled data set (paper 002: "Negative down-sampling ratio: 1/3").
SubsetDraw = Literal["epoch", "once"]
Factors = Mapping[str, "float | Mapping[str, float]"]


_TOL = 1e-9  # float noise: 300 x (1/3) is 100 items, not 100 plus a draw


def _check_labels(labels: Iterable[str]) -> list[str]:
    out = list(labels)
    for i, label in enumerate(out):
        if label not in ALL_LABELS:
            raise ValueError(
                f"ClassResampler: item {i}: field 'label': unknown label {label!r}; expected one of {ALL_LABELS}"
            )
    if not out:
        raise ValueError("ClassResampler: 'labels' is empty: nothing to sample")
    return out


def _check_tasks(tasks: Iterable[str] | None, n: int) -> list[str]:
    if tasks is None:
        return [ANY_TASK] * n
    out = list(tasks)
    if len(out) != n:
        raise ValueError(f"ClassResampler: {len(out)} tasks for {n} labels")
    for i, task in enumerate(out):
        if task not in TASKS:
            raise ValueError(
                f"ClassResampler: item {i}: field 'task': unknown task {task!r}; expected one of {task_names()}"
            )
    return out


def _check_factor(path: str, value: Any) -> float:
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or value < 0:
        raise ValueError(f"ClassResampler: '{path}' must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_factors(factors: Factors | None) -> dict[str, dict[str, float]]:
    """{task or ANY_TASK: {class: factor}} from a flat and/or per-task mapping."""
    out: dict[str, dict[str, float]] = {ANY_TASK: {}}
    for name, value in dict(factors or {}).items():
        if name in TASKS and isinstance(value, Mapping):
            out[name] = {}
            for label, factor in value.items():
                if label not in ALL_LABELS:
                    raise ValueError(
                        f"ClassResampler: 'data.class_factors[{name!r}]': unknown class {label!r}; "
                        f"expected one of {ALL_LABELS}"
                    )
                out[name][label] = _check_factor(f"data.class_factors[{name!r}][{label!r}]", factor)
        elif name in ALL_LABELS:
            out[ANY_TASK][name] = _check_factor(f"data.class_factors[{name!r}]", value)
        else:
            raise ValueError(
                f"ClassResampler: 'data.class_factors': unknown class {name!r}; expected one of {ALL_LABELS} "
                f"(every task) or a task of {task_names()} mapping to its class factors"
            )
    return out


def _check_task_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    out = {}
    for task, weight in dict(weights or {}).items():
        if task not in TASKS:
            raise ValueError(
                f"ClassResampler: 'data.task_weights': unknown task {task!r}; expected one of {task_names()}"
            )
        out[task] = _check_factor(f"data.task_weights[{task!r}]", weight)
    return out


def _group_items(tasks: Sequence[str], labels: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
    """Item indices per (task, class), in a fixed order (tasks as in TASKS, classes as in
    ALL_LABELS) so that the epoch's draws do not depend on the item order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(tasks, labels, strict=True)):
        groups.setdefault(key, []).append(i)
    task_order = (ANY_TASK, *task_names())
    ordered = sorted(groups, key=lambda k: (task_order.index(k[0]), ALL_LABELS.index(k[1])))
    return {k: np.asarray(groups[k], dtype=np.int64) for k in ordered}


_ROUNDING_STREAM = 1  # seeds the per-epoch rounding offset apart from the item draws
_KEPT_STREAM = 2  # seeds the subsets drawn once (subset_draw="once") apart from the epochs
_DRAW_STREAM = "sample-draw"  # keeps the per-sample seeds apart from any other stable_seed use


def draw_seed(seed: int, epoch: int, position: int) -> int:
    """Seed of the random choices of the sample at `position` (0-based, in the epoch list all
    ranks share) of `epoch`: the same in every process, worker and run. Keyed by position, not
    dataset index, so the copies of an up-sampled item draw independently."""
    return stable_seed(_DRAW_STREAM, seed, epoch, position)


class SampleIndex(int):
    """A dataset index (an int everywhere an index is expected) carrying `draw_seed`, the seed of
    its sample's random choices (`SceDataset` reads it). Pickles with its seed, so it reaches
    DataLoader workers intact."""

    draw_seed: int

    def __new__(cls, index: int, draw_seed: int) -> SampleIndex:
        obj = super().__new__(cls, index)
        obj.draw_seed = draw_seed
        return obj

    def __reduce__(self) -> tuple[type, tuple[int, int]]:
        return (SampleIndex, (int(self), self.draw_seed))

    def __repr__(self) -> str:
        return f"SampleIndex({int(self)}, draw_seed={self.draw_seed})"


def _points_below(x: float, offset: float) -> int:
    """How many of offset, offset + 1, offset + 2, ... lie below x."""
    return max(0, math.ceil(x - offset - _TOL))


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Fill the world size and rank from torch.distributed when it is initialized, else 1 and 0."""
    initialized = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"ClassResampler: invalid rank {rank} for num_replicas {num_replicas}")
    return num_replicas, rank


class ClassResampler(Sampler[int]):
    """Per-(task, class) up/down-sampling sampler with exact epoch counts, sharded across ranks.

    Epoch composition: a (task, class) group with `n` items and factor `f` (the task's weight
    times the task's class factor, else the flat class factor, else 1) contributes f*n items
    when that is an integer (every item floor(f) times plus a random subset without repetition,
    redrawn each epoch, or with `subset_draw="once"` drawn once from the seed and kept in every
    epoch): `{"collision": 15}` on 10 collisions gives 150 entries and
    `{"normal": 1/3}` on 300 negatives exactly 100. A fractional f*n gives floor or ceil of it
    per epoch with mean exactly f*n (`epoch_counts`). Classes missing from `factors` keep factor
    1; 0 drops a class. Everything random is drawn from numpy's generator seeded with
    (seed, epoch), identical on every rank. `shuffle=False` keeps dataset-index order.

    Iterating yields `SampleIndex`es: each index carries `draw_seed(seed, epoch, position)`,
    position being its place in the epoch list shared by all ranks (padding included), from
    which the dataset draws the sample's own random choices.

    Distributed: the epoch list (length N) is padded by repeating its start up to a multiple of
    `num_replicas` (or truncated to one with `drop_last=True`), and rank r takes positions
    r, r + R, r + 2R, ... like `DistributedSampler`. Every rank gets the same number of
    samples, and the ranks' *positions* are disjoint; because up-sampling repeats items, the
    same dataset index can still appear on several ranks.

    Resuming: `state_dict()` is `{"epoch", "seed", "consumed"}`, where `consumed` counts this
    rank's samples of the epoch already handed out by the running (or last) iterator. After
    `load_state_dict(state)` the next iterator yields exactly the rest of that epoch; a later
    `set_epoch` with another epoch starts fresh. With a `DataLoader`, samples handed out are not
    samples trained on (workers prefetch): in Lightning use `SamplerStateCallback`, which counts
    finished batches instead.

    Lightning: create the Trainer with `use_distributed_sampler=False` (Lightning would otherwise
    replace or re-shard this sampler); it calls `set_epoch` for you.

    Args:
        labels: the dataset's per-item labels, values in `ALL_LABELS` (a binary-scope record's
            own label, "event" or "normal").
        factors: class factors for every task, e.g. {"normal": 1/3}, and/or per task, e.g.
            {"mcq": {"collision": 15, "near_collision": 2}} (a task entry overrides the flat one).
        tasks: the per-item tasks (None: items without a task; then only flat factors apply).
        task_weights: per-task multipliers of the factors (missing tasks: 1).
        seed: base seed of the per-epoch draws (same for all ranks).
        shuffle: shuffle the epoch list (False: sorted by dataset index).
        num_replicas, rank: world size and rank (default: torch.distributed if initialized, else 1, 0).
        drop_last: truncate the epoch list to a multiple of num_replicas instead of padding it.
        subset_draw: "epoch" (redraw the fractional subsets and counts every epoch) or "once"
            (draw them once from `seed` and keep them: paper 002's negatives down-sampled once).
    """

    def __init__(
        self,
        labels: Sequence[str],
        factors: Mapping[str, float] | None = None,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        tasks: Sequence[str] | None = None,
        task_weights: Mapping[str, float] | None = None,
        subset_draw: SubsetDraw = "epoch",
    ) -> None:
        check_choice("data.subset_draw", subset_draw, SubsetDraw)
        self.subset_draw = subset_draw
        self.labels = _check_labels(labels)
        self.tasks = _check_tasks(tasks, len(self.labels))
        self.factors = _check_factors(factors)
        if tasks is None and len(self.factors) > 1:
            raise ValueError(
                "ClassResampler: per-task data.class_factors need the items' tasks (tasks=...), got "
                f"{sorted(set(self.factors) - {ANY_TASK})}"
            )
        self.task_weights = _check_task_weights(task_weights)
        if int(seed) != seed or seed < 0:
            raise ValueError(f"ClassResampler: 'seed' must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self._groups = _group_items(self.tasks, self.labels)
        self._warn_unmatched()
        # Epochs hold floor(E) or ceil(E) entries (E: the expected total); the length is the
        # larger, a shorter epoch is padded like the ranks' padding below.
        expected = sum(self.expected_counts().values())
        self.epoch_size = math.ceil(expected - _TOL)
        if math.floor(expected + _TOL) == 0:
            raise ValueError(
                f"ClassResampler: data.class_factors {factors} and data.task_weights "
                f"{task_weights} leave no item in some epochs ({expected:.3g} expected per epoch)"
            )
        if drop_last:
            self.num_samples = self.epoch_size // self.num_replicas
        else:
            self.num_samples = math.ceil(self.epoch_size / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch = 0
        self._consumed = 0  # samples of this rank's share of `epoch` handed out
        self._resume = False  # next iterator starts at `_consumed` (set by load_state_dict)
        self._iter_origin: tuple[int, int] | None = None  # (epoch, start) of a running iterator

    @classmethod
    def from_records(cls, records: Sequence[ClipRecord], **kwargs: Any) -> ClassResampler:
        """Build from manifest records (their `label` fields, one item each); kwargs as for the
        constructor."""
        return cls([r.label for r in records], **kwargs)

    def unmatched_factors(self) -> list[str]:
        """`data.class_factors` keys that match no item: "task.class" for a task entry, "class"
        for a flat one (e.g. paper 001's `mcq.collision` on binary-scope Nexar records, whose
        labels are event / normal)."""
        present = set(self._groups)
        out = []
        for task, factors in self.factors.items():
            for label in factors:
                if task == ANY_TASK and not any(lbl == label for _, lbl in present):
                    out.append(label)
                elif task != ANY_TASK and (task, label) not in present:
                    out.append(f"{task}.{label}")
        return out

    def unserved_tasks(self) -> list[str]:
        """`data.task_weights` tasks with a weight > 0 that no item serves."""
        served = {task for task, _ in self._groups}
        return [t for t, w in self.task_weights.items() if w > 0 and t not in served]

    def _warn_unmatched(self) -> None:
        unmatched, unserved = self.unmatched_factors(), self.unserved_tasks()
        classes = sorted({label for _, label in self._groups})
        if unmatched:
            rank_zero_warn(
                f"data.class_factors {unmatched} match no training item (the items' classes are "
                f"{classes}): these factors change nothing"
            )
        if unserved:
            rank_zero_warn(
                f"data.task_weights {unserved}: no record can serve these tasks (no label or "
                "annotation for them): they add no item"
            )

    def counts_table(self, epoch: int | None = None) -> str:
        """The epoch's entries per (task, class), with the expected count where it is
        fractional, as a compact table (logged at fit start)."""
        counts, expected = self.epoch_counts(epoch), self.expected_counts()
        width = max([12, *(len(task) for task, _ in self._groups)])  # structured_caption: 18
        rows = [f"{'task':<{width}} {'class':<15} {'items':>6} {'factor':>7} {'epoch':>7}"]
        for (task, label), idx in self._groups.items():
            e = expected[(task, label)]
            mean = "" if abs(e - round(e)) < _TOL else f" (mean {e:.2f})"
            rows.append(
                f"{task:<{width}} {label:<15} {len(idx):>6} {self.factor(task, label):>7.3g} "
                f"{counts[(task, label)]:>7}{mean}"
            )
        epoch = self.epoch if epoch is None else epoch
        total = sum(counts.values())
        rows.append(f"epoch {epoch}: {total} entries; {len(self)} per rank x {self.num_replicas}")
        return "\n".join(rows)

    def factor(self, task: str, label: str) -> float:
        """The factor of a (task, class) group: task weight x (task's class factor, else the
        flat class factor, else 1)."""
        per_task = self.factors.get(task, {})
        class_factor = per_task.get(label, self.factors[ANY_TASK].get(label, 1.0))
        return self.task_weights.get(task, 1.0) * class_factor

    def expected_counts(self) -> dict[tuple[str, str], float]:
        """Expected entries per (task, class) and epoch: items x factor (may be fractional)."""
        return {
            (task, label): len(idx) * self.factor(task, label)
            for (task, label), idx in self._groups.items()
        }

    def epoch_counts(self, epoch: int | None = None) -> dict[tuple[str, str], int]:
        """Entries per (task, class) in `epoch` (default: the current one) before padding.

        Each group gets floor(expected) entries plus one with probability equal to the
        fractional part, by systematic sampling: one uniform offset per epoch, drawn from
        (seed, epoch) so every rank agrees (with subset_draw "once": from the seed alone, the
        same counts every epoch), hits the groups' fractional parts laid end to end.
        Each group's mean over epochs is exactly its expected count, and the epoch's total
        stays within one of the expected total (the padding to `len(self)` makes up the rest).
        """
        epoch = self.epoch if epoch is None else epoch
        key = [self.seed, _KEPT_STREAM] if self.subset_draw == "once" else [self.seed, epoch]
        offset = float(np.random.default_rng([*key, _ROUNDING_STREAM]).random())
        counts, filled = {}, 0.0  # fractional parts laid end to end so far
        for key, expected in self.expected_counts().items():
            base = math.floor(expected + _TOL)
            frac = max(0.0, expected - base - _TOL)
            # the offset's points offset, offset + 1, ... falling in [filled, filled + frac)
            hits = _points_below(filled + frac, offset) - _points_below(filled, offset)
            counts[key] = base + hits
            filled += frac
        return counts

    def epoch_class_counts(self, epoch: int | None = None) -> dict[str, int]:
        """Entries per class in `epoch` (default: the current one) before padding, summed over
        tasks (the 3-class labels always, "event" when binary-scope items are present)."""
        counts = {c: 0 for c in LABELS}
        for (_, label), n in self.epoch_counts(epoch).items():
            counts[label] = counts.get(label, 0) + n
        return counts

    def epoch_indices(self, epoch: int | None = None, padded: bool = True) -> list[int]:
        """The epoch's full index list shared by all ranks (padded/truncated unless `padded=False`)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        parts = []
        counts = self.epoch_counts(epoch)
        for group, ((task, label), idx) in enumerate(self._groups.items()):
            whole, extra = divmod(counts[(task, label)], len(idx))
            parts.append(np.tile(idx, whole))
            if self.subset_draw == "once":  # the same subset every epoch
                kept = np.random.default_rng([self.seed, _KEPT_STREAM, group])
                parts.append(kept.permutation(idx)[:extra])
            else:
                parts.append(rng.permutation(idx)[:extra])  # a fresh subset every epoch
        order = np.concatenate(parts)
        order = rng.permutation(order) if self.shuffle else np.sort(order, kind="stable")
        out = order.tolist()
        if not padded:
            return out
        if self.total_size <= len(out):
            return out[: self.total_size]
        reps = math.ceil(self.total_size / len(out))
        return (out * reps)[: self.total_size]

    def rank_indices(self, epoch: int | None = None) -> list[int]:
        """This rank's share of the epoch: positions rank, rank + R, ... of `epoch_indices`."""
        return self.epoch_indices(epoch)[self.rank : self.total_size : self.num_replicas]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iterator yields (Lightning calls this).

        Setting the epoch already selected keeps a resume position loaded by `load_state_dict`.
        """
        if epoch < 0:
            raise ValueError(f"ClassResampler.set_epoch: epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch, self._consumed, self._resume = epoch, 0, False

    def __len__(self) -> int:
        """Samples per rank and epoch (a resumed iterator yields `len - consumed` of them)."""
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        # A generator: nothing is fixed until the first index is requested, so a state loaded
        # after `iter(dataloader)` but before the first batch still applies.
        epoch, start = self.epoch, self._consumed if self._resume else 0
        self._resume, self._consumed = False, start
        self._iter_origin = origin = (epoch, start)
        step = self.num_replicas
        try:
            for local, index in enumerate(self.rank_indices(epoch)[start:], start):
                self._consumed += 1
                yield SampleIndex(index, draw_seed(self.seed, epoch, self.rank + local * step))
        finally:
            if self._iter_origin is origin:  # an abandoned older iterator must not clear it
                self._iter_origin = None

    def state_dict(self) -> dict[str, int]:
        """{"epoch", "seed", "consumed"}: enough to resume this rank mid-epoch."""
        return {"epoch": self.epoch, "seed": self.seed, "consumed": self._consumed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict()`; the next iterator yields the remaining samples of that epoch."""
        for key in ("epoch", "seed", "consumed"):
            if key not in state:
                raise ValueError(
                    f"ClassResampler.load_state_dict: missing field {key!r} in {dict(state)}"
                )
        epoch, seed, consumed = int(state["epoch"]), int(state["seed"]), int(state["consumed"])
        if epoch < 0 or seed < 0 or not 0 <= consumed <= self.num_samples:
            raise ValueError(
                f"ClassResampler.load_state_dict: invalid state {dict(state)} "
                f"(consumed must be in [0, {self.num_samples}])"
            )
        if seed != self.seed:
            warnings.warn(
                f"ClassResampler: restoring seed {seed} from the saved state (was {self.seed})",
                stacklevel=2,
            )
        self.epoch, self.seed, self._consumed, self._resume = epoch, seed, consumed, True


# --------------------------------------------------------------------------- Lightning callback
def _loaders(obj: Any) -> list[DataLoader]:
    """The DataLoaders in a DataLoader, a list/dict of them or a CombinedLoader."""
    if hasattr(obj, "flattened"):  # CombinedLoader
        obj = obj.flattened
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [dl for item in obj for dl in _loaders(item)]
    return [obj] if isinstance(obj, DataLoader) else []


def _resampler_of(loader: DataLoader) -> ClassResampler | None:
    """The loader's ClassResampler (as `sampler` or inside its batch sampler), if any."""
    sampler = loader.sampler
    wrapped = getattr(getattr(sampler, "dataset", None), "_sampler", None)
    if isinstance(sampler, DistributedSampler) and isinstance(wrapped, ClassResampler):
        raise RuntimeError(
            "ClassResampler was wrapped in a DistributedSampler by Lightning: create the Trainer "
            "with use_distributed_sampler=False (the sampler shards across ranks itself)"
        )
    for candidate in (sampler, getattr(loader.batch_sampler, "sampler", None)):
        if isinstance(candidate, ClassResampler):
            return candidate
    return None


def _start_of(sampler: ClassResampler) -> int:
    """Where the sampler's current epoch (re)starts: the restored position, else 0."""
    if sampler._resume:
        return sampler._consumed
    origin = sampler._iter_origin
    return origin[1] if origin is not None and origin[0] == sampler.epoch else 0


def _batch_size(loader: DataLoader) -> int:
    size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None)
    if not size:
        raise RuntimeError("SamplerStateCallback: cannot tell the training DataLoader's batch size")
    return int(size)


class SamplerStateCallback(Callback):
    """Save the training `ClassResampler`'s position in checkpoints and restore it on resume.

    Attach it to the Trainer (`callbacks=[SamplerStateCallback()]`, Trainer created with
    `use_distributed_sampler=False`). It records `{"epoch", "seed", "consumed"}` after every
    training batch (consumed = finished batches x batch size, so worker prefetching does not
    count) and stores it in the checkpoint's callback state. On `fit(ckpt_path=...)` it loads
    the state into the sampler before the first batch, so the resumed epoch yields exactly the
    samples not yet trained on. All ranks consume the same number of batches, so the state saved
    by rank 0 is valid on every rank.

    The sampler is taken from `sampler=` or, when the checkpoint is restored (after
    `LightningDataModule.setup()`), from an attribute of the datamodule; otherwise from the training DataLoader at train start. That last route is fine
    with `num_workers=0`; with workers the DataLoader draws indices as soon as Lightning creates
    its iterator (before train start), so build the sampler in `LightningDataModule.setup()` (as
    an attribute) or pass it here, else resuming raises an error instead of silently replaying
    the epoch's start.
    """

    def __init__(self, sampler: ClassResampler | None = None) -> None:
        self.sampler = sampler
        self._state: dict[str, int] | None = None  # last recorded position
        self._pending: dict[str, int] | None = None  # loaded from a checkpoint, not yet applied
        self._applied_to: ClassResampler | None = None
        self._batch_size = 0
        self._trainer: Trainer | None = None

    def state_dict(self) -> dict[str, Any]:
        sampler = self.sampler
        if sampler is not None and (self._state is None or self._state["epoch"] != sampler.epoch):
            return {"epoch": sampler.epoch, "seed": sampler.seed, "consumed": _start_of(sampler)}
        return dict(self._state or {})

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer  # the checkpoint is restored after setup: see load_state_dict

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending, self._applied_to = (dict(state_dict) or None), None
        # Apply now if the sampler is reachable: Lightning builds the train DataLoader's iterator
        # (and starts its workers) before any later hook.
        sampler = self.sampler if self.sampler is not None else self._from_datamodule(self._trainer)
        if sampler is not None and self._pending is not None:
            self._apply(sampler)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        found = [
            (dl, s)
            for dl in _loaders(trainer.train_dataloader)
            if (s := _resampler_of(dl)) is not None
        ]
        if len(found) != 1:
            raise RuntimeError(
                f"SamplerStateCallback: expected one ClassResampler in the training DataLoader, found {len(found)}"
            )
        loader, sampler = found[0]
        if (sampler.num_replicas, sampler.rank) != (trainer.world_size, trainer.global_rank):
            raise RuntimeError(
                f"ClassResampler has num_replicas={sampler.num_replicas}, rank={sampler.rank} but the "
                f"trainer runs world_size={trainer.world_size}, global_rank={trainer.global_rank}"
            )
        self.sampler, self._batch_size = sampler, _batch_size(loader)
        if self._pending is not None and self._applied_to is not sampler:
            if sampler._iter_origin is not None:
                raise RuntimeError(
                    "SamplerStateCallback: the DataLoader started drawing indices before the saved sampler "
                    "state could be restored (num_workers > 0 with a sampler built in train_dataloader()); "
                    "build the ClassResampler in LightningDataModule.setup() or pass it to "
                    "SamplerStateCallback(sampler=...)"
                )
            self._apply(sampler)
        self._pending, self._applied_to = None, None
        self._state = {"epoch": sampler.epoch, "seed": sampler.seed, "consumed": _start_of(sampler)}

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        sampler = self.sampler
        if sampler is None:
            return
        consumed = min((batch_idx + 1) * self._batch_size, len(sampler))
        self._state = {"epoch": sampler.epoch, "seed": sampler.seed, "consumed": consumed}

    def _apply(self, sampler: ClassResampler) -> None:
        state = dict(self._pending or {})
        if 0 < len(sampler) <= int(state.get("consumed", -1)):
            # A finished epoch: Lightning resumes with the next one. Selecting it now keeps a
            # DataLoader whose workers start drawing before `set_epoch` from replaying nothing.
            state.update(epoch=int(state["epoch"]) + 1, consumed=0)
        sampler.load_state_dict(state)
        self._applied_to = sampler

    @staticmethod
    def _from_datamodule(trainer: Trainer | None) -> ClassResampler | None:
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if datamodule is None:
            return None
        found = [v for v in vars(datamodule).values() if isinstance(v, ClassResampler)]
        return found[0] if len(found) == 1 else None
