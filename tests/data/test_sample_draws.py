"""Per-sample random choices are a pure function of (data.seed, epoch, position in the epoch).

The training sampler yields `SampleIndex`es carrying each sample's draw seed; the dataset draws
a training sample's IMU dropout and VQA question from it, never from a process's RNG, so the
prompt is the same in any worker, with any number of workers, and after a resume. The
DataLoaders never touch the global RNG (they have their own generator).
"""

from __future__ import annotations

import pickle
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from helpers.stub_clip import SPEC
from torch.utils.data import DataLoader

from sce.data.clip import WindowSpec
from sce.data.dataset import SceDataset
from sce.data.sampling import ClassResampler, SampleIndex, draw_seed
from sce.data.schema import ClipRecord

VQA = {
    "vqa": [
        {"question": f"Q{k}?", "options": ["yes", "no"], "answer": "A" if k % 2 else "B"}
        for k in range(5)
    ]
}
LABELS = ["collision"] * 2 + ["near_collision"] * 3 + ["normal"] * 5
FACTORS = {"collision": 4}  # 8 collision entries: copies of the same index


def _keys(sampler: ClassResampler) -> list[tuple[int, int]]:
    return [(int(i), i.draw_seed) for i in sampler]


def test_draw_seeds_are_keyed_by_seed_epoch_and_position():
    sampler = ClassResampler(LABELS, FACTORS, seed=3)
    keys = _keys(sampler)
    assert all(isinstance(i, SampleIndex) for i in sampler)
    assert [i for i, _ in keys] == sampler.epoch_indices()  # still the dataset indices
    assert [s for _, s in keys] == [draw_seed(3, 0, p) for p in range(len(keys))]
    assert _keys(ClassResampler(LABELS, FACTORS, seed=3)) == keys  # another process / run
    # up-sampled copies of one item draw independently
    copies = Counter(i for i, _ in keys)
    assert max(copies.values()) == 4 and len({s for _, s in keys}) == len(keys)
    sampler.set_epoch(1)
    assert not {s for _, s in _keys(sampler)} & {s for _, s in keys}  # a new epoch, new draws
    assert {s for _, s in _keys(ClassResampler(LABELS, FACTORS, seed=4))}.isdisjoint(
        {s for _, s in keys}
    )


def test_resumed_and_sharded_samplers_yield_the_same_keys():
    full = _keys(ClassResampler(LABELS, FACTORS, seed=3))
    resumed = ClassResampler(LABELS, FACTORS, seed=3)
    resumed.load_state_dict({"epoch": 0, "seed": 3, "consumed": 5})
    assert _keys(resumed) == full[5:]
    ranks = [ClassResampler(LABELS, FACTORS, seed=3, num_replicas=3, rank=r) for r in range(3)]
    shares = [_keys(s) for s in ranks]
    # 16 entries padded to 18 (positions 16, 17 repeat items 0, 1 with draws of their own);
    # rank r takes positions r, r + 3, ...: the seeds of the positions it takes
    indices = ranks[0].epoch_indices()
    assert len(full) == 16 and len(indices) == 18 and indices[16:] == indices[:2]
    for r, share in enumerate(shares):
        positions = range(r, 18, 3)
        assert share == [(indices[p], draw_seed(3, 0, p)) for p in positions]
        assert share[: len(full[r::3])] == full[r::3]


def test_sample_index_pickles_with_its_seed():
    index = SampleIndex(7, draw_seed=123)
    again = pickle.loads(pickle.dumps(index))
    assert again == 7 and again.draw_seed == 123 and [10, 11, 12, 13, 14, 15, 16, 17][index] == 17


def _records() -> list[ClipRecord]:
    labels = ("collision", "near_collision", "normal")
    return [
        ClipRecord(f"r{i}", "v.mp4", labels[i % 3], "private", "train", annotations=VQA)
        for i in range(6)
    ]


def _prompt(sample) -> tuple[bool, str, str]:
    return sample.imu_on, sample.user_content[-1]["text"], sample.answer


def test_training_draws_come_from_the_key_not_the_process(stub_loader):
    ds = SceDataset(_records(), SPEC, train=True, task_weights={"vqa": 1.0}, imu_dropout=0.5)
    keys = list(ClassResampler(ds.labels, seed=0, tasks=ds.tasks))
    torch.manual_seed(0)
    first = [_prompt(ds[k]) for k in keys]
    torch.manual_seed(1)  # another worker's generator
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    again = [_prompt(ds[k]) for k in keys]
    assert again == first
    # the global RNGs are not consumed by keyed draws
    assert torch.equal(states[0], torch.get_rng_state())
    assert (states[1] == np.random.get_state()[1]).all() and states[2] == random.getstate()
    # the draws do vary: dropout both ways, several questions
    assert {imu for imu, _, _ in first} == {True, False}
    assert len({question for _, question, _ in first}) > 2


def _ids_prompts(batch: list) -> list:
    return [(s.id, *_prompt(s)) for s in batch]


def test_workers_build_the_same_samples(stub_loader):
    """Samples built in 2 worker processes equal those built in the main process."""
    ds = SceDataset(_records(), SPEC, train=True, task_weights={"vqa": 1.0}, imu_dropout=0.5)
    sampler = ClassResampler(ds.labels, FACTORS, seed=0, tasks=ds.tasks)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(
            ds, batch_size=2, sampler=sampler, num_workers=workers, collate_fn=_ids_prompts
        )
        batches[workers] = [b for b in loader]
    assert batches[2] == batches[0] and len(batches[0]) == 6


def test_datamodule_loaders_leave_the_global_rng_alone(tiny_kit: Path, synthetic_manifest: Path):
    from sce.data.datamodule import SceDataModule

    data = SceDataModule(
        str(synthetic_manifest), str(tiny_kit), window=WindowSpec(fps=1, before=2, after=2)
    )
    data.setup("fit")
    torch.manual_seed(0)
    state = torch.get_rng_state()
    iter(data.train_dataloader()), iter(data.val_dataloader())
    assert torch.equal(state, torch.get_rng_state())


def test_plain_indices_still_draw_reproducibly(stub_loader):
    """Outside the sampler (a plain int), a training item draws its seed from torch's RNG."""
    ds = SceDataset(_records(), SPEC, train=True, imu_dropout=0.5)
    torch.manual_seed(0)
    first = [_prompt(ds[i % len(ds)]) for i in range(40)]
    torch.manual_seed(0)
    assert [_prompt(ds[i % len(ds)]) for i in range(40)] == first
    assert {imu for imu, _, _ in first} == {True, False}
