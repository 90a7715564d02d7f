"""Small-set guarantee shared by the split assigners (sources' `assign_splits`, synthetic data).

Stratified rounding per class leaves held-out splits empty on small sets: 6 clips (2 per class)
at 90/5/5 round to 0 val and 0 test clips per class, and `sce fit` then has no validation data.
`fill_empty_splits` runs after any stratified assignment: every split asked for (positive
fraction) that came out empty takes one item, as long as there are enough items for each asked
split to keep one (3 for train/val/test).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

from sce.data.schema import ALL_LABELS, SPLITS


def split_fractions_asked(val_fraction: float, test_fraction: float) -> list[str]:
    """The splits a (val, test) fraction pair asks for: train, plus val/test when positive."""
    asked = ["train"]
    asked += [name for name, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    return asked


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
