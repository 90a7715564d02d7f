"""LightningDataModule: manifest splits -> datasets -> re-sampled, collated dataloaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Subset

from sce.common.choices import check_choice, check_choices
from sce.data.clip import ClipSpec, WindowSpec
from sce.data.collate import CollateMode, Collator, Overflow
from sce.data.dataset import ImuSetting, SceDataset
from sce.data.sampling import SubsetDraw
from sce.data.schema import ManifestError, OnBadSample, load_manifest
from sce.data.video import Backend
from sce.data.video_processing import at_model_size
from sce.tasks import DEFAULT_EVAL_TASKS, TaskName, check_task_names
from sce.tasks.events import DEFAULT_WORDING, EventWordingName

# The string options of SceDataModule (the `sce fit` parser offers and checks the same choices
# from the signature; the window's own are checked by WindowSpec).
OPTION_CHOICES = {
    "decoder": Backend,
    "overflow": Overflow,
    "on_bad_sample": OnBadSample,
    "subset_draw": SubsetDraw,
    "event_wording": EventWordingName,
}
LIST_OPTION_CHOICES = {"eval_imu": ImuSetting}  # task names: checked against the registry


class SceDataModule(L.LightningDataModule):
    """Data for every recipe.

    Args:
        manifest: canonical manifest.jsonl (see sce/data/schema.py), or `synthetic:N:SEED`.
        processor_path: folder or hub id of the processor (linked to model.model_path by the CLI).
        window: the window, one value (sce.data.clip.WindowSpec): fps, before, after, width,
            height, layout, mode, max_frames, max_pixels, scales, keyframes, telemetry_anchor,
            channels (the model's inputs beside the frames: [telemetry] or [] for video only)
            and prompt (whose wording: sce or paper002); in a config
            `data: {window: {fps: 15}}`, on the command line `--data.window.fps=15`.
        decoder: "decord" or "pyav".
        task_weights: training task mix, e.g. {"mcq": 1, "caption": 1, "vqa": 1, "reasoning": 2}:
            every record gives one item per task it can serve with weight > 0, repeated
            `weight` times per epoch (a fraction draws a random subset each epoch, or once:
            `subset_draw`).
        imu_dropout: probability of removing telemetry from a training prompt (paper 000: 0.5).
        eval_imu: evaluation settings, subset of ["on", "off"] (with IMU / video only).
        eval_tasks: tasks asked at evaluation.
        class_factors: per-(task, class) re-sampling of the training items, e.g.
            {"mcq": {"collision": 15, "near_collision": 2}} (paper 001: the MCQ items) or the
            flat {"normal": 0.333} for every task (paper 002); a task entry overrides the flat
            one. Classes are the records' own labels ("event" / "normal" for a binary-scope
            record). None disables.
        subset_draw: "epoch" (default): which items a fractional count keeps (a down-sampled
            class, a task weight below 1) is redrawn every epoch; "once": drawn once from
            `seed` and kept, a down-sampled data set (paper 002's negatives).
        batch_size: training micro-batch per device.
        eval_batch_size: validation/test/generation batch (default: batch_size).
        num_workers: data-loader worker processes.
        max_length: sequence limit in tokens (visual tokens are never cut).
        overflow: what a sample longer than max_length does: "error" or "drop" (counted as
            data/*_dropped).
        on_bad_sample: "error" or "skip" (counted and logged as data/*_skipped).
        cache_dir: optional frame cache folder (decoded windows reused across runs).
        seed: seed of the training data: each epoch's re-sampling and order, and each
            sample's random choices (IMU dropout, VQA question), keyed by (seed, epoch,
            position) so they do not depend on seed_everything, workers or a resume.
        eval_seed: seed of the evaluation subsets (GenerationEvaluation's max_samples /
            per_class) and of the evaluation items' choices (which VQA pair is asked); apart
            from `seed` so runs trained with different seeds are scored on the same items.
        allowed_roots: opt-in folders every record's files (video, imu, gps, driver video,
            frames) must lie in, after resolving symlinks and `..`; a record pointing elsewhere
            fails the load, naming line, id and field. None (default): any readable path.
        event_wording: the wording of the 3-way event question (mcq, reasoning): "sce"
            (default) or "paper001", paper 001's question as written (its option order and
            words); answers are read in the same wording.
    """

    def __init__(
        self,
        manifest: str,
        processor_path: str | None = None,
        window: WindowSpec = WindowSpec(),  # noqa: B008 (frozen: one shared default is safe)
        decoder: Backend = "decord",
        task_weights: dict[TaskName, float] | None = None,
        imu_dropout: float = 0.5,
        eval_imu: Sequence[ImuSetting] = ("on",),
        eval_tasks: Sequence[TaskName] = DEFAULT_EVAL_TASKS,
        class_factors: dict[str, float | dict[str, float]] | None = None,
        batch_size: int = 2,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        max_length: int = 4096,
        overflow: Overflow = "error",
        on_bad_sample: OnBadSample = "error",
        cache_dir: str | None = None,
        seed: int = 0,
        eval_seed: int = 0,
        allowed_roots: list[str] | None = None,
        subset_draw: SubsetDraw = "epoch",
        event_wording: EventWordingName = DEFAULT_WORDING,
    ):
        check_options(locals())  # the parser's checks, for direct construction
        super().__init__()
        # a mapping: the window's settings as a checkpoint holds them (load_from_checkpoint)
        self.window = window if isinstance(window, WindowSpec) else WindowSpec.from_settings(window)
        # saved as plain data: a checkpoint and the logs are read back without unpickling a
        # class (sce export records it, sce report reads its fps)
        window = self.window.settings()  # noqa: F841 (read by save_hyperparameters)
        self.save_hyperparameters()
        self.processor = None
        self.datasets: dict[str, SceDataset] = {}

    # ------------------------------------------------------------------ setup
    @property
    def manifest(self) -> str:
        """The manifest path (the config layer turns a `synthetic:N:SEED` spec into one)."""
        return self.hparams.manifest

    @property
    def spec(self) -> ClipSpec:
        """How this data module loads a clip: its window, read with data.decoder."""
        return ClipSpec.of(self.window, self.hparams.decoder)

    def _load_processor(self):
        if self.processor is None:
            if not self.hparams.processor_path:
                raise ValueError(
                    "data.processor_path is not set (the CLI links it to model.model_path)"
                )
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(self.hparams.processor_path)
        return self.processor

    def _cache(self):
        if not self.hparams.cache_dir:
            return None
        from sce.data.cache import FrameCache

        return FrameCache(self.hparams.cache_dir)

    def split_records(self, split: str):
        hp = self.hparams
        records = load_manifest(
            self.manifest,
            splits=[split],
            on_bad_sample=hp.on_bad_sample,
            allowed_roots=hp.allowed_roots,
        )
        if not records:
            raise ManifestError(
                f"{self.manifest}: no records in split {split!r} (sce data validate "
                f"{self.manifest} lists the records per split and class)"
            )
        bad = [r.problem for r in records if r.problem]
        if bad:  # only under on_bad_sample=skip: load_manifest raises otherwise
            rank_zero_warn(
                f"data: {len(bad)} {split} record(s) with malformed annotations or metadata; their samples "
                f"are skipped and counted in data/{split}_skipped. First: {bad[0]}"
            )
        return records

    def dataset(self, split: str) -> SceDataset:
        """The dataset of a split: training items for "train", evaluation items otherwise."""
        if split not in self.datasets:
            hp = self.hparams
            self.datasets[split] = SceDataset(
                self.split_records(split),
                at_model_size(self.spec, self._load_processor()),
                train=split == "train",
                task_weights=hp.task_weights,
                imu_dropout=hp.imu_dropout,
                imu_settings=tuple(hp.eval_imu),
                eval_tasks=tuple(hp.eval_tasks),
                on_bad_sample=hp.on_bad_sample,
                cache=self._cache(),
                eval_seed=hp.eval_seed,
                event_wording=hp.event_wording,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        self._load_processor()
        if not Path(self.manifest).is_file():
            raise ManifestError(f"data.manifest: file not found: {self.manifest}")
        if stage in (None, "fit"):
            # Built here, not in train_dataloader(): a resumed run restores the sampler's
            # position before workers start drawing indices (SamplerStateCallback).
            self.train_sampler = self._train_sampler()
            # What the class factors and task weights make of this manifest, once per fit.
            rank_zero_info(
                "data: training items per (task, class) and epoch "
                f"(data.task_weights x data.class_factors):\n{self.train_sampler.counts_table()}"
            )

    def _train_sampler(self):
        from sce.data.sampling import ClassResampler

        replicas, rank = self._world()
        dataset = self.dataset("train")
        return ClassResampler(
            dataset.labels,
            factors=self.hparams.class_factors or {},
            tasks=dataset.tasks,
            task_weights=dataset.task_weights,
            seed=self.hparams.seed,
            shuffle=True,
            num_replicas=replicas,
            subset_draw=self.hparams.subset_draw,
            rank=rank,
        )

    # ------------------------------------------------------------------ loaders
    def collator(self, mode: CollateMode) -> Collator:
        return Collator(
            self._load_processor(), self.hparams.max_length, mode, self.hparams.overflow
        )

    def _loader(
        self, dataset, batch_size: int, mode: str, sampler=None, shuffle=False
    ) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=shuffle if sampler is None else False,
            num_workers=workers,
            collate_fn=self.collator(mode),
            persistent_workers=workers > 0,
            pin_memory=False,
            # Its own generator: creating an iterator draws the workers' base seed from it, not
            # from the global RNG, whose training stream (NEFTune noise) then does not depend on
            # when iterators are made (a resume at an epoch's end makes none). The samples' own
            # draws are keyed by the sampler (SampleIndex), not by worker seeds.
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        if getattr(self, "train_sampler", None) is None:
            self.train_sampler = self._train_sampler()
        return self._loader(
            self.dataset("train"), self.hparams.batch_size, "train", sampler=self.train_sampler
        )

    @property
    def eval_batch_size(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    def val_dataloader(self) -> DataLoader:
        # Loss items only: evaluation-only items (reasoning without a trace) have no target.
        return self._loader(self.dataset("val").loss_view(), self.eval_batch_size, "train")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test").loss_view(), self.eval_batch_size, "train")

    # the split `sce predict` answers (all of it), named by the predictions writer's message
    predict_split = "test"

    def predict_dataloader(self) -> DataLoader:
        return self.generation_dataloader(self.predict_split)

    def generation_dataloader(
        self,
        split: str,
        max_samples: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        per_class: int | None = None,
    ) -> DataLoader:
        """Prompt-only batches (left padded) of a split for generation-based evaluation.

        The split's fixed evaluation subset (`max_samples` items or `per_class` clips of each
        class, stratified by class and source, drawn from data.eval_seed over the whole split)
        is sharded across ranks: rank r takes subset items r, r+W, ...
        """
        dataset = self.dataset(split)
        indices = dataset.evaluation_subset(max_samples, per_class)
        shard = dataset.by_task(indices[rank::world_size])  # one task per batch
        return self._loader(Subset(dataset, shard), self.eval_batch_size, "generate")

    def state_dict(self) -> dict[str, Any]:
        return {}


def check_options(args: dict[str, Any]) -> None:
    """SceDataModule's string options (its init `args`) against their Literal choices, as the
    `sce fit` parser checks them: direct construction (notebooks, tests) fails on a typo before
    the processor or any data loads."""
    for name, alias in OPTION_CHOICES.items():
        check_choice(f"data.{name}", args[name], alias)
    for name, alias in LIST_OPTION_CHOICES.items():
        check_choices(f"data.{name}", args[name], alias)
    check_task_names("data.eval_tasks", args["eval_tasks"])
    check_task_names("data.task_weights", args["task_weights"] or {})
