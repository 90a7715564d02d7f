"""The one stratified split assigner (`assign_splits`), used by the source converters and the
synthetic generator, and its small-set guarantee.

Stratified rounding per class leaves held-out splits empty on small sets: 6 clips (2 per class)
at 90/5/5 round to 0 val and 0 test clips per class, and `sce fit` then has no validation data.
`fill_empty_splits` runs after the stratified assignment: every split asked for (positive
fraction) that came out empty takes one item, as long as there are enough items for each asked
split to keep one (3 for train/val/test).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

from sce.data.schema import ALL_LABELS, SPLITS


def split_fractions_asked(val_fraction: float, test_fraction: float) -> list[str]:
    """The splits a (val, test) fraction pair asks for: train, plus val/test when positive."""
    asked = ["train"]
    asked += [name for name, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    return asked


def check_split_fractions(fractions: Sequence[float]) -> None:
    """(train, val, test): three non-negative numbers summing to 1."""
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split_fractions must be 3 non-negative numbers summing to 1: {fractions}"
        )


def class_split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """(train, val, test) counts of one class of `n` items.

    Largest-remainder rounding, so the counts sum to `n` and each is within one item of
    n * fraction (rounding each split half up on its own does not: 30 items at 90/5/5 would
    give 26 / 2 / 2). Then every split with a positive fraction gets at least one item when the
    class has an item for each such split (9 balanced clips give every split every class).
    """
    exact = np.array(fractions, dtype=float) * n
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    positive = [k for k, f in enumerate(fractions) if f > 0]
    if n >= len(positive):
        for k in positive:
            if counts[k] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[k] = 1
    return [int(c) for c in counts]


def assign_splits(
    labels: Sequence[str],
    fractions: Sequence[float],
    seed: int | None = None,
    keys: Sequence[str] | None = None,
) -> list[str]:
    """The split of each item, stratified by its label: one class at a time, by `fractions`
    (train, val, test) as `class_split_counts` rounds them, then `fill_empty_splits`.

    Within a class the items keep their given order (the synthetic generator shuffles the
    clips itself) unless `seed` is given: then they are sorted by `keys` and shuffled with
    `Random(f"{seed}:{label}")`, so one class's assignment does not depend on the other
    classes. Along the class's order the last items go to test, those before them to val, the
    rest to train; a seeded shuffle is walked backwards, so the first shuffled items are the
    held-out ones (as the converters have always drawn them: manifests keep their splits).
    """
    check_split_fractions(fractions)
    if keys is None:
        keys = [str(i) for i in range(len(labels))]
    if len(keys) != len(labels):
        raise ValueError(f"{len(keys)} keys for {len(labels)} labels")
    out = [""] * len(labels)
    order: list[int] = []  # the walk order; `fill_empty_splits` moves a class's last item
    for label in dict.fromkeys(labels):
        members = [i for i, lab in enumerate(labels) if lab == label]
        if seed is not None:
            members.sort(key=lambda i: keys[i])
            random.Random(f"{seed}:{label}").shuffle(members)
            members.reverse()
        order += members
        counts = class_split_counts(len(members), fractions)
        names = [SPLITS[k] for k in range(len(SPLITS)) for _ in range(counts[k])]
        for i, name in zip(members, names, strict=True):
            out[i] = name
    splits = dict(enumerate(out))
    asked = [SPLITS[k] for k, f in enumerate(fractions) if f > 0]
    fill_empty_splits(splits, dict(enumerate(labels)), order, asked)
    return [splits[i] for i in range(len(labels))]


def fill_empty_splits(
    splits: dict[Hashable, str],
    labels: dict[Hashable, str],
    order: Sequence[Hashable],
    asked: Sequence[str],
) -> list[str]:
    """Move one item into each split of `asked` that has none; returns the splits it filled.

    `splits` (item -> split) is changed in place; `labels` gives each item's class and `order`
    the items in the assigner's (seeded) order: the last matching item moves. Nothing moves when
    there are fewer items than asked splits (the caller reports the empty split).

    Which item moves: from the (split, class) with the most items, so no split loses its last
    item of a class while another could spare one; on a tie a held-out split gives before train
    (training keeps every class it has), then the larger split, then the more severe class.
    """
    if len(splits) < len(asked):
        return []
    filled: list[str] = []
    for target in sorted(asked, key=lambda s: -SPLITS.index(s)):  # test first, then val
        if target in splits.values():
            continue
        sizes = Counter(splits.values())
        pairs = Counter((s, labels[i]) for i, s in splits.items() if s != target and sizes[s] > 1)
        if not pairs:
            break
        donor, label = max(
            pairs,
            key=lambda p: (pairs[p], p[0] != "train", sizes[p[0]], -_severity_rank(p[1])),
        )
        item = next(i for i in reversed(order) if splits[i] == donor and labels[i] == label)
        splits[item] = target
        filled.append(target)
    return filled


def empty_split_warning(counts: Counter, asked: Sequence[str]) -> str:
    """'' when every asked split has items, else one line naming the empty ones and the counts."""
    empty = [s for s in asked if not counts[s]]
    if not empty:
        return ""
    shown = ", ".join(f"{s} {counts[s]}" for s in SPLITS)
    return (
        f"split(s) {', '.join(empty)} came out empty ({shown}): too few clips for every split "
        f"(sce fit needs train and val records, sce test needs test records)"
    )


def _severity_rank(label: str) -> int:
    """Position of `label` in ALL_LABELS (most severe first); unknown labels last."""
    return ALL_LABELS.index(label) if label in ALL_LABELS else len(ALL_LABELS)
