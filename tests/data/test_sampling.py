"""Class re-sampling sampler (papers 001: collision x15, near-collision x2; 002: negatives 1/3)."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.paths import REPO
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from sce.data.clip import WindowSpec
from sce.data.sampling import ClassResampler, SamplerStateCallback
from sce.data.schema import ClipRecord


def make_labels(collision: int, near: int, normal: int) -> list[str]:
    # interleave the classes so that class membership is not a contiguous index range
    labels = ["collision"] * collision + ["near_collision"] * near + ["normal"] * normal
    return labels[::2] + labels[1::2]


def label_counts(labels: list[str], indices: list[int]) -> dict[str, int]:
    return dict(Counter(labels[i] for i in indices))


PAPER_001 = {"collision": 15, "near_collision": 2}


def _counts(n: int, factor: float, epochs: int = 1) -> list[int]:
    """The epoch counts of one class of `n` items with `factor` (plus 10 normals x1)."""
    sampler = ClassResampler(["collision"] * n + ["normal"] * 10, {"collision": factor}, seed=5)
    return [sampler.epoch_counts(e)[("*", "collision")] for e in range(epochs)]


def test_integer_counts_are_exact_every_epoch():
    assert _counts(10, 15, 5) == [150] * 5
    assert _counts(300, 1 / 3, 5) == [100] * 5  # float noise is no fraction
    assert _counts(10, 2.5, 5) == [25] * 5  # 2*10 + 5
    assert _counts(5, 0, 5) == [0] * 5


def test_fractional_counts_round_stochastically_with_the_exact_mean():
    """A 1-item group with weight 0.25: 0 or 1 per epoch, 1 in a quarter of the epochs (before:
    Python round(0.25) = 0 in every epoch, the group never trained); the same on every rank."""
    epochs = 4000
    for n, factor, low in ((1, 0.25, 0), (7, 1 / 3, 2), (5, 0.5, 2)):
        counts = _counts(n, factor, epochs)
        assert set(counts) == {low, low + 1}
        assert np.mean(counts) == pytest.approx(n * factor, abs=0.03)
    labels = ["collision"] + ["normal"] * 10
    ranks = [
        ClassResampler(labels, {"collision": 0.25}, seed=5, num_replicas=2, rank=r)
        for r in (0, 1)
    ]  # fmt: skip
    for epoch in range(50):
        assert ranks[0].epoch_counts(epoch) == ranks[1].epoch_counts(epoch)
        assert ranks[0].epoch_indices(epoch) == ranks[1].epoch_indices(epoch)
        shares = ranks[0].rank_indices(epoch) + ranks[1].rank_indices(epoch)
        assert len(ranks[0].rank_indices(epoch)) == len(ranks[0]) == 6  # ceil(10.25 / 2)
        assert sorted(shares) == sorted(ranks[0].epoch_indices(epoch))  # padded to 12


def test_up_sampling_counts_exact():
    labels = make_labels(10, 20, 100)
    sampler = ClassResampler(labels, PAPER_001)
    expected = {"collision": 150, "near_collision": 40, "normal": 100}
    assert sampler.epoch_class_counts() == expected
    assert len(sampler) == 290
    for epoch in (0, 1):
        epoch_list = sampler.epoch_indices(epoch, padded=False)
        assert label_counts(labels, epoch_list) == expected
        per_item = Counter(epoch_list)
        for i, label in enumerate(labels):  # integer factors: every item exactly f times
            assert per_item[i] == {"collision": 15, "near_collision": 2, "normal": 1}[label]


# ------------------------------------------------------------------ per-(task, class) factors


def _records(n_per_class: dict[str, int], annotations: dict, scope: str = "three_class"):
    labels = [c for c, n in n_per_class.items() for _ in range(n)]
    return [
        ClipRecord(f"r{i}", "v.mp4", label, "nexar", "train", annotations=annotations,
                   label_scope=scope)
        for i, label in enumerate(labels[::2] + labels[1::2])
    ]  # fmt: skip


def _epoch_task_class_counts(sampler: ClassResampler, epoch: int = 0) -> dict:
    items = list(zip(sampler.tasks, sampler.labels, strict=True))
    return dict(Counter(items[i] for i in sampler.epoch_indices(epoch, padded=False)))


def _dataset_sampler(records, task_weights, class_factors, **kwargs) -> ClassResampler:
    from sce.data.clip import WindowSpec
    from sce.data.dataset import SceDataset

    ds = SceDataset(records, WindowSpec(3.0, 4.0, 2.0, 112, 56), True, task_weights=task_weights)
    return ClassResampler(
        ds.labels, class_factors, tasks=ds.tasks, task_weights=ds.task_weights, **kwargs
    )


def test_mcq_factors_up_sample_the_mcq_items_only():
    """Paper 001: collision x15 and near-collision x2 on the MCQ items; the captions stay x1
    (before: clips were up-sampled before a per-item task draw, so the collision captions were
    x15 too and the MCQ collision:normal ratio fell to ~0.09)."""
    n = 4
    records = _records({"collision": n, "near_collision": n, "normal": n}, {"caption": "c"})
    factors = {"mcq": {"collision": 15, "near_collision": 2}}
    sampler = _dataset_sampler(records, {"mcq": 1.0, "caption": 1.0}, factors, seed=3)
    expected = {
        ("mcq", "collision"): n * 15,
        ("mcq", "near_collision"): n * 2,
        ("mcq", "normal"): n,
        ("caption", "collision"): n,
        ("caption", "near_collision"): n,
        ("caption", "normal"): n,
    }
    assert sampler.epoch_counts() == expected
    for epoch in (0, 1):
        assert _epoch_task_class_counts(sampler, epoch) == expected
    # sharded over 2 ranks: the ranks' shares are the epoch (no item lost or added)
    ranks = [
        _dataset_sampler(records, {"mcq": 1.0, "caption": 1.0}, factors, seed=3,
                         num_replicas=2, rank=r)
        for r in (0, 1)
    ]  # fmt: skip
    shares = [ranks[r].rank_indices(1) for r in (0, 1)]
    assert sorted(shares[0] + shares[1]) == sorted(sampler.epoch_indices(1))


def test_flat_factors_apply_to_every_task_and_task_entries_override():
    records = _records({"collision": 2, "normal": 2}, {"caption": "c"})
    flat = _dataset_sampler(records, {"mcq": 1.0, "caption": 1.0}, {"collision": 3})
    assert flat.epoch_counts() == {
        ("mcq", "collision"): 6, ("mcq", "normal"): 2,
        ("caption", "collision"): 6, ("caption", "normal"): 2,
    }  # fmt: skip
    mixed = _dataset_sampler(
        records, {"mcq": 1.0, "caption": 0.5}, {"collision": 3, "caption": {"collision": 1}}
    )
    assert mixed.epoch_counts() == {
        ("mcq", "collision"): 6, ("mcq", "normal"): 2,
        ("caption", "collision"): 1, ("caption", "normal"): 1,  # weight 0.5 x factor 1
    }  # fmt: skip
    with pytest.raises(ValueError, match="per-task data.class_factors need the items' tasks"):
        ClassResampler(["normal"], {"mcq": {"normal": 2}})
    with pytest.raises(ValueError, match="factors\\['mcq'\\]': unknown class 'crash'"):
        ClassResampler(["normal"], {"mcq": {"crash": 2}}, tasks=["mcq"])
    with pytest.raises(ValueError, match="item 0: field 'task': unknown task 'story'"):
        ClassResampler(["normal"], tasks=["story"])


def test_paper001_config_reproduces_its_mcq_counts():
    """experiments/paper001_sft.yaml on paper 001's 1k / 9k / 43k MCQ clips (here 1/100 of it):
    15k / 18k / 43k MCQ items (collision:normal 0.349), the other tasks x1 (reasoning x2, Table 9's
    best row with reasoning VQA; the metadata captions: Table 1's "Detailed Caption Data"); the
    table `sce fit` prints at start lists every task of the mix."""
    config = yaml_data("paper001_sft.yaml")
    annotations = {
        "caption": "c",
        "vqa": [{"question": "q", "answer": "a"}],
        "reasoning": "r",
        "structured_caption": "s",
        "reasoning_vqa": {"question": "q", "options": ["a", "b"], "answer": "A", "reasons": ["r"]},
    }
    records = _records({"collision": 10, "near_collision": 90, "normal": 430}, annotations)
    sampler = _dataset_sampler(records, config["task_weights"], config["class_factors"])
    counts = sampler.epoch_counts()
    mcq = {c: counts[("mcq", c)] for c in ("collision", "near_collision", "normal")}
    assert mcq == {"collision": 150, "near_collision": 180, "normal": 430}
    assert mcq["collision"] / mcq["normal"] == pytest.approx(0.349, abs=1e-3)
    for label, n in (("collision", 10), ("near_collision", 90), ("normal", 430)):
        assert counts[("caption", label)] == counts[("vqa", label)] == n
        assert counts[("structured_caption", label)] == counts[("reasoning_vqa", label)] == n
        assert counts[("reasoning", label)] == 2 * n
    table = sampler.counts_table().splitlines()
    assert "structured_caption normal             430       1     430" in table
    assert "reasoning_vqa      collision           10       1      10" in table
    assert "reasoning          near_collision      90       2     180" in table


def test_binary_records_resample_by_their_own_label():
    """Paper 002 on Nexar (binary: event / normal): `normal: 1/3` keeps every event and a third of
    the negatives; a 3-class collision factor never touches a binary event."""
    records = _records({"event": 30, "normal": 90}, {}, scope="binary")
    config = yaml_data("paper002_risk.yaml")
    sampler = _dataset_sampler(records, config["task_weights"], config["class_factors"])
    assert sampler.epoch_counts() == {("probability", "event"): 30, ("probability", "normal"): 30}
    assert sampler.epoch_class_counts() == {
        "collision": 0, "near_collision": 0, "normal": 30, "event": 30
    }  # fmt: skip
    with pytest.warns(UserWarning, match="data.class_factors \\['mcq.collision'\\] match no"):
        paper001 = _dataset_sampler(records, {"mcq": 1.0}, {"mcq": {"collision": 15}})
    assert paper001.epoch_counts() == {("mcq", "event"): 30, ("mcq", "normal"): 90}


def test_factors_and_task_weights_that_match_nothing_are_named():
    """Paper 001's MCQ factors on binary-scope Nexar records (event / normal) change nothing, and
    a caption weight without captions adds nothing: both are said, naming the config keys."""
    records = _records({"event": 3, "normal": 5}, {}, scope="binary")
    factors = {"mcq": {"collision": 15, "near_collision": 2}, "normal": 1}
    with pytest.warns(UserWarning) as caught:
        sampler = _dataset_sampler(records, {"mcq": 1.0, "caption": 1.0}, factors)
    messages = [str(w.message) for w in caught]
    assert any(
        m.startswith("data.class_factors ['mcq.collision', 'mcq.near_collision'] match no")
        and "['event', 'normal']" in m
        for m in messages
    ), messages
    assert any(m.startswith("data.task_weights ['caption']: no record") for m in messages)
    assert (sampler.unmatched_factors(), sampler.unserved_tasks()) == (
        ["mcq.collision", "mcq.near_collision"], ["caption"]
    )  # fmt: skip
    with warnings.catch_warnings():  # matching factors: silent
        warnings.simplefilter("error")
        _dataset_sampler(records, {"mcq": 1.0}, {"mcq": {"event": 2}})
    with pytest.raises(ValueError, match="data.class_factors\\['normal'\\]' must be a finite"):
        ClassResampler(["normal"], {"normal": -1})
    with pytest.raises(ValueError, match="'data.task_weights': unknown task 'story'"):
        ClassResampler(["normal"], task_weights={"story": 1})
    with pytest.raises(ValueError, match="data.task_weights: unknown task"):
        _dataset_sampler(records, {"story": 1.0}, {})


def test_fit_start_logs_the_epochs_task_class_counts(tiny_kit, synthetic_manifest, caplog):
    import logging

    from sce.data.datamodule import SceDataModule
    from sce.data.schema import load_manifest

    train = Counter(r.label for r in load_manifest(synthetic_manifest) if r.split == "train")
    data = SceDataModule(
        str(synthetic_manifest), str(tiny_kit), window=WindowSpec(width=112, height=56),
        task_weights={"mcq": 1}, class_factors={"mcq": {"collision": 3, "normal": 0.5}},
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        data.setup("fit")
    (message,) = [r.getMessage() for r in caplog.records if "per (task, class)" in r.message]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in message.splitlines()[2:-1]}
    counts = data.train_sampler.epoch_counts()
    assert counts[("mcq", "collision")] == 3 * train["collision"]
    assert rows[("mcq", "collision")] == [str(train["collision"]), "3", str(3 * train["collision"])]
    assert rows[("mcq", "near_collision")][-1] == str(train["near_collision"])
    assert rows[("mcq", "normal")][:3] == [
        str(train["normal"]),
        "0.5",
        str(counts[("mcq", "normal")]),
    ]
    assert set(rows) == {("mcq", c) for c in train}


def yaml_data(name: str) -> dict:
    """The `data` section of an experiment config."""
    import yaml

    path = REPO / "experiments" / name
    return yaml.safe_load(path.read_text())["data"]


def test_down_sampling_negatives_to_a_third():
    labels = make_labels(30, 0, 300)
    sampler = ClassResampler(labels, {"normal": 1 / 3}, seed=7)
    assert sampler.epoch_class_counts() == {"collision": 30, "near_collision": 0, "normal": 100}
    assert len(sampler) == 130
    subsets = []
    for epoch in (0, 1):
        epoch_list = sampler.epoch_indices(epoch, padded=False)
        assert label_counts(labels, epoch_list) == {"collision": 30, "normal": 100}
        normals = [i for i in epoch_list if labels[i] == "normal"]
        assert len(set(normals)) == 100  # a subset: no negative twice
        subsets.append(set(normals))
    assert subsets[0] != subsets[1]  # redrawn each epoch
    assert set(sampler.epoch_indices(0)) == set(
        ClassResampler(labels, {"normal": 1 / 3}, seed=7).epoch_indices(0)
    )


def _paper002_sampler(subset_draw: str) -> tuple[list[str], ClassResampler]:
    """The issue's probe: 90 positives and 900 negatives under paper 002's config factors."""
    import yaml

    data = yaml.safe_load((REPO / "experiments" / "paper002_risk.yaml").read_text())["data"]
    labels = make_labels(90, 0, 900)
    factors = data["class_factors"]
    return labels, ClassResampler(labels, factors, seed=3, subset_draw=subset_draw)


def test_paper002_negatives_are_down_sampled_once_and_kept():
    # paper 002: "Negative down-sampling ratio: 1/3", the set down-sampled once; before, the
    # kept third was redrawn every epoch: 33.3%, 56.6%, 71.4% of the negatives seen in 3 epochs
    import yaml

    data = yaml.safe_load((REPO / "experiments" / "paper002_risk.yaml").read_text())["data"]
    labels, sampler = _paper002_sampler(data["subset_draw"])
    assert data["subset_draw"] == "once"
    kept, orders = [], []
    for epoch in range(3):
        epoch_list = sampler.epoch_indices(epoch, padded=False)
        assert label_counts(labels, epoch_list) == {"collision": 90, "normal": 300}
        kept.append({i for i in epoch_list if labels[i] == "normal"})
        orders.append(epoch_list)
    assert kept[0] == kept[1] == kept[2] and len(kept[0]) == 300  # 33.3% seen, every epoch
    assert orders[0] != orders[1] != orders[2]  # the order is still shuffled per epoch
    _, again = _paper002_sampler("once")  # drawn from the seed: the same in a new process
    assert {i for i in again.epoch_indices(2, padded=False) if labels[i] == "normal"} == kept[0]


def test_per_epoch_redraw_stays_an_option():
    labels, sampler = _paper002_sampler("epoch")
    seen: set[int] = set()
    shares = []
    for epoch in range(3):
        seen |= {i for i in sampler.epoch_indices(epoch, padded=False) if labels[i] == "normal"}
        shares.append(len(seen) / 900)
    assert shares[0] == pytest.approx(1 / 3) and shares[1] > 0.5 and shares[2] > 0.65
    with pytest.raises(ValueError, match=r"data.subset_draw must be one of \['epoch', 'once'\]"):
        ClassResampler(labels, {"normal": 1 / 3}, subset_draw="per_run")


def test_fractional_up_sampling_repeats_a_subset_once_more():
    labels = ["collision"] * 10 + ["normal"] * 4
    sampler = ClassResampler(labels, {"collision": 1.5, "normal": 0})
    epoch_list = sampler.epoch_indices(padded=False)
    assert sampler.epoch_class_counts() == {"collision": 15, "near_collision": 0, "normal": 0}
    assert sorted(Counter(Counter(epoch_list).values()).items()) == [(1, 5), (2, 5)]
    assert all(labels[i] == "collision" for i in epoch_list)


def test_two_ranks_disjoint_positions_equal_lengths_cover_the_epoch():
    labels = make_labels(10, 20, 100)
    ranks = [ClassResampler(labels, PAPER_001, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    shares = [list(s) for s in ranks]
    assert [len(s) for s in ranks] == [145, 145]
    assert [len(s) for s in shares] == [145, 145]
    full = ranks[0].epoch_indices()
    assert full == ranks[1].epoch_indices() and len(full) == 290
    positions = [set(range(r, 290, 2)) for r in (0, 1)]
    assert positions[0].isdisjoint(positions[1]) and positions[0] | positions[1] == set(range(290))
    for r in (0, 1):
        assert shares[r] == [full[p] for p in sorted(positions[r])]
    assert sorted(shares[0] + shares[1]) == sorted(full)


def test_three_ranks_pad_from_the_start_or_drop_last():
    labels = make_labels(10, 20, 100)  # 290 per epoch
    padded = [ClassResampler(labels, PAPER_001, num_replicas=3, rank=r) for r in range(3)]
    assert [len(s) for s in padded] == [97, 97, 97]
    full, plain = padded[0].epoch_indices(), padded[0].epoch_indices(padded=False)
    assert len(full) == 291 and full[:290] == plain and full[290] == plain[0]
    interleaved = [None] * 291
    for r, s in enumerate(padded):
        interleaved[r::3] = list(s)
    assert interleaved == full
    dropped = [
        ClassResampler(labels, PAPER_001, num_replicas=3, rank=r, drop_last=True) for r in range(3)
    ]
    assert [len(s) for s in dropped] == [96, 96, 96]
    assert sorted(i for s in dropped for i in s) == sorted(plain[:288])


def test_order_changes_with_epoch_and_seed_and_repeats_otherwise():
    labels = make_labels(10, 20, 100)
    sampler = ClassResampler(labels, PAPER_001, seed=5)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch0 != epoch1 and sorted(epoch0) == sorted(epoch1)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    assert list(ClassResampler(labels, PAPER_001, seed=5)) == epoch0
    assert list(ClassResampler(labels, PAPER_001, seed=6)) != epoch0
    ordered = list(ClassResampler(labels, PAPER_001, shuffle=False))
    assert ordered == sorted(ordered) and len(ordered) == 290


def test_resume_after_k_samples_yields_exactly_the_rest():
    labels = make_labels(10, 20, 100)
    kwargs = dict(factors=PAPER_001, seed=11, num_replicas=2, rank=1)
    first = ClassResampler(labels, **kwargs)
    first.set_epoch(2)
    full = first.rank_indices()
    it = iter(first)
    head = [next(it) for _ in range(37)]
    state = first.state_dict()
    assert state == {"epoch": 2, "seed": 11, "consumed": 37}

    second = ClassResampler(labels, **kwargs)
    second.load_state_dict(state)
    second.set_epoch(2)  # what Lightning does at the epoch start: keeps the resume position
    assert head + list(second) == full and len(full) == 145
    assert list(second) == full  # the next pass of the epoch is whole again
    second.set_epoch(3)
    assert list(second) == second.rank_indices(3)

    third = ClassResampler(labels, **kwargs)
    third.load_state_dict(state)
    third.set_epoch(3)  # another epoch: the saved position does not apply
    assert list(third) == third.rank_indices(3)
    assert third.state_dict() == {"epoch": 3, "seed": 11, "consumed": 145}


def test_load_state_dict_rejects_bad_state():
    sampler = ClassResampler(make_labels(2, 2, 2))
    with pytest.raises(ValueError, match="consumed must be in \\[0, 6\\]"):
        sampler.load_state_dict({"epoch": 0, "seed": 0, "consumed": 7})
    with pytest.raises(ValueError, match="missing field 'consumed'"):
        sampler.load_state_dict({"epoch": 0, "seed": 0})
    with pytest.warns(UserWarning, match="restoring seed 4"):
        sampler.load_state_dict({"epoch": 1, "seed": 4, "consumed": 2})
    assert sampler.seed == 4 and len(list(sampler)) == 4


class IndexDataset(Dataset):
    def __init__(self, labels: list[str]):
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(i)])


def test_dataloader_yields_expected_batches():
    labels = make_labels(10, 20, 100)
    sampler = ClassResampler(labels, PAPER_001, num_replicas=2, rank=0)  # 145 per rank
    loader = DataLoader(IndexDataset(labels), batch_size=16, sampler=sampler)
    batches = list(loader)
    assert len(loader) == len(batches) == 10  # ceil(145 / 16)
    assert [len(b) for b in batches] == [16] * 9 + [1]
    assert torch.cat(batches).flatten().long().tolist() == sampler.rank_indices()
    assert (
        len(list(DataLoader(IndexDataset(labels), batch_size=16, sampler=sampler, drop_last=True)))
        == 9
    )


def test_default_world_from_records_and_bad_input():
    sampler = ClassResampler(make_labels(1, 1, 1))
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    records = [
        ClipRecord(id=str(i), video="v.mp4", label=label, source="synthetic", split="train")
        for i, label in enumerate(["normal", "collision", "normal"])
    ]
    from_records = ClassResampler.from_records(records, factors={"collision": 3, "normal": 0.5})
    assert from_records.epoch_class_counts() == {"collision": 3, "near_collision": 0, "normal": 1}
    with pytest.raises(ValueError, match="must be a finite number >= 0, got True"):
        ClassResampler(["normal"], {"normal": True})
    with pytest.raises(ValueError, match="item 1: field 'label': unknown label 'crash'"):
        ClassResampler(["normal", "crash"])
    with pytest.raises(ValueError, match="unknown class 'crash'"):
        ClassResampler(["normal"], {"crash": 2})
    with pytest.raises(ValueError, match="factors\\['normal'\\]' must be a finite number >= 0"):
        ClassResampler(["normal"], {"normal": -1})
    with pytest.raises(ValueError, match="leave no item"):
        ClassResampler(["normal"], {"normal": 0})
    with pytest.raises(ValueError, match="invalid rank 2"):
        ClassResampler(["normal"], num_replicas=2, rank=2)


# ----------------------------------------------------------------------------- Lightning resume
LIGHTNING_LABELS = make_labels(6, 4, 30)
LIGHTNING_FACTORS = {"collision": 2, "near_collision": 1.5, "normal": 1 / 3}  # 12 + 6 + 10 = 28


class Recorder(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[tuple[int, list[int]]] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, batch.flatten().long().tolist()))
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def make_loader(sampler: ClassResampler | None = None, num_workers: int = 0) -> DataLoader:
    sampler = sampler or ClassResampler(LIGHTNING_LABELS, LIGHTNING_FACTORS, seed=1)
    return DataLoader(
        IndexDataset(LIGHTNING_LABELS),
        batch_size=4,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


class WorkerDataModule(LightningDataModule):
    """The recommended shape with workers: the sampler is built in setup(), kept as an attribute."""

    def setup(self, stage: str) -> None:
        self.train_sampler = ClassResampler(LIGHTNING_LABELS, LIGHTNING_FACTORS, seed=1)

    def train_dataloader(self) -> DataLoader:
        return make_loader(self.train_sampler, num_workers=1)


def fit(
    root: Path, ckpt_path: Path | None = None, save_every_step: bool = False, datamodule=None
) -> Recorder:
    callbacks = [SamplerStateCallback()]
    if save_every_step:
        callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=1, save_top_k=-1))
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=save_every_step,
        callbacks=callbacks,
        default_root_dir=root,
    )
    model = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's tiny-run and resumable-loader warnings
        if datamodule is None:
            trainer.fit(model, train_dataloaders=make_loader(), ckpt_path=ckpt_path)
        else:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model


def test_lightning_resume_mid_epoch_replays_exactly_the_remaining_batches(tmp_path: Path):
    full = fit(tmp_path, save_every_step=True).seen
    assert len(full) == 14  # 2 epochs x ceil(28 / 4)
    sampler = ClassResampler(LIGHTNING_LABELS, LIGHTNING_FACTORS, seed=1)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        assert [i for e, b in full if e == epoch for i in b] == list(sampler)
    # step 3: mid epoch 0; step 7: the end of epoch 0; step 9: mid epoch 1
    for step, epoch in ((3, 0), (7, 0), (9, 1)):
        resumed = fit(
            tmp_path / f"resume{step}", ckpt_path=tmp_path / f"epoch={epoch}-step={step}.ckpt"
        )
        assert resumed.seen == full[step:], f"resume from step {step}"


def test_lightning_resume_with_workers_and_sampler_built_in_setup(tmp_path: Path):
    full = fit(tmp_path, save_every_step=True).seen  # reference run without workers
    for step, epoch in ((3, 0), (7, 0)):
        ckpt = tmp_path / f"epoch={epoch}-step={step}.ckpt"
        resumed = fit(tmp_path / f"resume{step}", ckpt_path=ckpt, datamodule=WorkerDataModule())
        assert resumed.seen == full[step:], f"resume from step {step}"


def fake_trainer(loader: DataLoader, datamodule=None) -> SimpleNamespace:
    return SimpleNamespace(
        train_dataloader=loader, world_size=1, global_rank=0, datamodule=datamodule
    )


def test_callback_refuses_state_that_arrives_after_indices_were_drawn():
    labels = make_labels(4, 4, 4)
    state = {"epoch": 0, "seed": 0, "consumed": 4}
    sampler = ClassResampler(labels)
    loader = DataLoader(IndexDataset(labels), batch_size=2, sampler=sampler)
    callback = SamplerStateCallback()
    callback.setup(fake_trainer(loader), None, "fit")
    callback.load_state_dict(state)  # sampler not reachable yet
    it = iter(sampler)
    next(it)  # what DataLoader workers do when Lightning creates the iterator
    with pytest.raises(RuntimeError, match="started drawing indices before"):
        callback.on_train_start(fake_trainer(loader), None)

    # reachable through the datamodule: restored at checkpoint load, before any index is drawn
    sampler = ClassResampler(labels)
    loader = DataLoader(IndexDataset(labels), batch_size=2, sampler=sampler)
    callback = SamplerStateCallback()
    datamodule = SimpleNamespace(train_sampler=sampler)
    callback.setup(fake_trainer(loader, datamodule), None, "fit")
    callback.load_state_dict(state)
    it = iter(sampler)
    first = next(it)
    callback.on_train_start(fake_trainer(loader, datamodule), None)
    assert [first, *it] == sampler.rank_indices()[4:]
    assert callback.state_dict() == {"epoch": 0, "seed": 0, "consumed": 4}
    callback.on_train_batch_end(fake_trainer(loader), None, None, None, batch_idx=2)
    assert callback.state_dict() == {"epoch": 0, "seed": 0, "consumed": 6}


def test_callback_rejects_lightning_distributed_wrapper_and_rank_mismatch():
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    labels = make_labels(4, 4, 4)
    sampler = ClassResampler(labels, num_replicas=2, rank=0)
    wrapped = DataLoader(
        IndexDataset(labels),
        batch_size=2,
        sampler=DistributedSamplerWrapper(sampler, num_replicas=2, rank=0),
    )
    with pytest.raises(RuntimeError, match="use_distributed_sampler=False"):
        SamplerStateCallback().on_train_start(fake_trainer(wrapped), None)
    plain = DataLoader(IndexDataset(labels), batch_size=2, sampler=sampler)
    with pytest.raises(
        RuntimeError, match="num_replicas=2, rank=0 but the trainer runs world_size=1"
    ):
        SamplerStateCallback().on_train_start(fake_trainer(plain), None)


def _rank_share(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        sampler = ClassResampler(
            make_labels(10, 20, 100), PAPER_001
        )  # world from torch.distributed
        torch.save((sampler.num_replicas, sampler.rank, list(sampler)), f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_world_defaults_from_torch_distributed(tmp_path: Path):
    torch.multiprocessing.spawn(_rank_share, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    shares = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [s[:2] for s in shares] == [(2, 0), (2, 1)]
    full = ClassResampler(make_labels(10, 20, 100), PAPER_001).epoch_indices()
    assert shares[0][2] == full[0::2] and shares[1][2] == full[1::2]
