"""`sce data cache`: decode every window of a config into its frame cache before training.

Training fills `data.cache_dir` as a side effect of its first epoch; this fills it up front,
in parallel, with a progress bar and a count of failures, so the first epoch of every ablation
is as fast as the later ones. It builds the config's own SceDataModule and calls the same
`load_clip` that training calls, so the cache keys are exactly the ones training will look up.

    sce data cache --config experiments/paper000_dora.yaml --data.manifest=DATA/manifest.jsonl \\
        [--data.window.fps=5] [--splits train val] [--workers 8]
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from torch.utils.data import DataLoader, Dataset

SPLITS = ("train", "val", "test")
MAX_LISTED_FAILURES = 10


class WindowJobs(Dataset):
    """One job per distinct (record, window scale) of a dataset: decode it into the cache.

    Returns (sample id, status): "decoded", "cached" (already present) or "error: ...".
    Evaluation items repeat a window per task and IMU setting; it is decoded once.
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.jobs = sorted({(item.record, item.scale) for item in dataset.items}, key=_job_order)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[str, str]:
        from sce.data.clip import ClipError, load_clip

        record_index, scale = self.jobs[index]
        record = self.dataset.records[record_index]
        cache = self.dataset.cache
        misses = cache.misses
        try:
            load_clip(record, self.dataset.window_spec(scale), cache)
        except ClipError as err:
            return record.id, f"error: {err}"
        return record.id, "decoded" if cache.misses > misses else "cached"


def _job_order(job: tuple[int, float | None]) -> tuple[int, float]:
    return job[0], -1.0 if job[1] is None else job[1]


def _unbatched(item: Any) -> Any:
    return item


def prefill_split(dataset, workers: int, desc: str) -> tuple[Counter, list[tuple[str, str]]]:
    """Decode a dataset's windows into its cache: (status counts, [(sample id, error)])."""
    from tqdm import tqdm

    jobs = WindowJobs(dataset)
    loader = DataLoader(jobs, batch_size=None, num_workers=workers, collate_fn=_unbatched)
    counts: Counter = Counter()
    failures: list[tuple[str, str]] = []
    for sample_id, status in tqdm(loader, total=len(jobs), desc=desc, unit="window"):
        if status.startswith("error: "):
            counts["failed"] += 1
            failures.append((sample_id, status.removeprefix("error: ")))
        else:
            counts[status] += 1
    return counts, failures


def datamodule_from_config(
    config: Mapping[str, Any] | str, path: str, overrides: Sequence[str] = ()
):
    """The SceDataModule `sce fit --config CONFIG *overrides` builds (sce.train.config's parser:
    its defaults, types and the processor linked to model.model_path). `config` is the YAML
    path or a mapping of its sections; `path` names it in errors."""
    from sce.train.config import datamodule_from_cli

    source = path if not isinstance(config, Mapping) else yaml.safe_dump(dict(config))
    datamodule = datamodule_from_cli(["--config", source, *overrides])
    if not datamodule.hparams.cache_dir:
        raise ValueError(f"{path}: field 'data.cache_dir' is not set (--data.cache_dir=DIR)")
    return datamodule


def prefill_cache(
    path: str, splits: Sequence[str], workers: int, overrides: Sequence[str] = ()
) -> int:
    """Fill the frame cache of the config at `path` (with `--data.x=...` overrides) for
    `splits`; prints a summary, returns the exit code."""
    from sce.data.schema import ManifestError

    datamodule = datamodule_from_config(path, path, overrides)
    datamodule.setup("predict")  # loads the processor and checks the manifest
    failed = 0
    print(f"frame cache: {datamodule.hparams.cache_dir}")
    for split in splits:
        try:
            dataset = datamodule.dataset(split)
        except ManifestError as err:
            print(f"  {split}: skipped ({err})")
            continue
        counts, failures = prefill_split(dataset, workers, desc=f"cache {split}")
        print(
            f"  {split}: {counts['decoded']} decoded, {counts['cached']} already cached, "
            f"{counts['failed']} failed"
        )
        for sample_id, error in failures[:MAX_LISTED_FAILURES]:
            print(f"    {sample_id}: {error}")
        if len(failures) > MAX_LISTED_FAILURES:
            print(f"    ... and {len(failures) - MAX_LISTED_FAILURES} more")
        failed += counts["failed"]
    return 1 if failed else 0


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    from sce.train.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (0: inline)")


def cache_command(args: argparse.Namespace) -> int:
    try:
        return prefill_cache(args.config, args.splits, args.workers, args.config_overrides)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"sce data cache: {err}")
        return 2
