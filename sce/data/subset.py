"""Fixed, stratified evaluation subsets and per-item seeds for evaluation.

An evaluation subset is chosen once per split from `data.eval_seed`, over the whole split and
before any distributed sharding, so every epoch, run and rank count scores the same items:

- clips are the unit (a clip brings all its evaluation items: every task and IMU setting, so the
  "with IMU" and "video only" columns score the same clips);
- each (class, source) stratum is ordered by a stable hash of (seed, record id), independent of
  the manifest's order;
- clips are taken in a sequence where every prefix is a proportional allocation across classes
  and, within a class, across sources (Huntington-Hill apportionment: each stratum gets one
  clip before any gets a second, then seats follow its size), so a small source late in the
  manifest is represented as soon as the budget allows.

`max_items` keeps the first N items of that sequence; `per_class` keeps the first N clips of each
class (paper 001: "66 examples from each of the 3 classes").
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

from lightning.pytorch.utilities import rank_zero_warn


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' text: the same in every process and run (unlike hash())."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def evaluation_subset(
    record_ids: Sequence[str],
    strata: Sequence[tuple[str, str]],
    item_records: Sequence[int],
    seed: int,
    max_items: int | None = None,
    per_class: int | None = None,
) -> list[int]:
    """Indices (ascending) of the evaluation items to score.

    Args:
        record_ids: id of each record.
        strata: (class, source) of each record.
        item_records: record index of each item.
        seed: subset seed (data.eval_seed).
        max_items: keep this many items (None: no limit).
        per_class: keep this many clips of every class (None: no limit); exclusive with
            max_items. A class with fewer clips keeps all of them, with a warning.
    """
    if max_items is not None and per_class is not None:
        raise ValueError("set max_samples or per_class, not both")
    for name, value in (("max_samples", max_items), ("per_class", per_class)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")
    items_of: dict[int, list[int]] = defaultdict(list)
    for index, record in enumerate(item_records):
        items_of[record].append(index)
    order = _stratified_order(
        list(items_of), [strata[r] for r in items_of], [record_ids[r] for r in items_of], seed
    )
    if per_class is not None:
        order = _first_per_class(order, strata, per_class)
    chosen = [i for record in order for i in items_of[record]]
    if max_items is not None:
        chosen = chosen[:max_items]
    return sorted(chosen)


def _first_per_class(order: list[int], strata: Sequence[tuple[str, str]], n: int) -> list[int]:
    taken: dict[str, int] = defaultdict(int)
    kept = []
    for record in order:
        label = strata[record][0]
        if taken[label] < n:
            taken[label] += 1
            kept.append(record)
    short = {label: count for label, count in sorted(taken.items()) if count < n}
    if short:
        rank_zero_warn(f"evaluation per_class={n}: these classes have fewer clips: {short}")
    return kept


def _stratified_order(
    records: list[int], strata: list[tuple[str, str]], ids: list[str], seed: int
) -> list[int]:
    """Records in the order they join the subset (see the module docstring)."""
    by_stratum: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for record, stratum, record_id in zip(records, strata, ids, strict=True):
        by_stratum[stratum].append((stable_seed(seed, record_id), record_id, record))
    queues = {s: [r for *_, r in sorted(v)] for s, v in by_stratum.items()}
    by_class: dict[str, list[str]] = defaultdict(list)
    for label, source in sorted(queues):
        by_class[label].append(source)
    class_order = _apportion({c: sum(len(queues[c, s]) for s in by_class[c]) for c in by_class})
    source_orders = {
        c: iter(_apportion({s: len(queues[c, s]) for s in sources}))
        for c, sources in by_class.items()
    }
    taken: dict[tuple[str, str], int] = defaultdict(int)
    order = []
    for label in class_order:
        stratum = (label, next(source_orders[label]))
        order.append(queues[stratum][taken[stratum]])
        taken[stratum] += 1
    return order


def _apportion(sizes: dict[Hashable, int]) -> list[Hashable]:
    """Huntington-Hill seat sequence: the key of each successive seat, sum(sizes) seats in all.
    Every key gets a seat before any gets two; ties go to the larger, then the first key."""
    keys = sorted(sizes)
    seats = dict.fromkeys(keys, 0)
    sequence = []
    for _ in range(sum(sizes.values())):
        open_keys = [k for k in keys if seats[k] < sizes[k]]
        best = max(
            open_keys,
            key=lambda k: (_priority(sizes[k], seats[k]), sizes[k], -keys.index(k)),
        )
        seats[best] += 1
        sequence.append(best)
    return sequence


def _priority(size: int, seats: int) -> float:
    return math.inf if seats == 0 else size / math.sqrt(seats * (seats + 1))
