"""`sce data cache`: decode every window of a config into its frame cache before training.

Training fills `data.cache_dir` as a side effect of its first epoch; this fills it up front,
in parallel, with a progress bar and a count of failures, so the first epoch of every ablation
is as fast as the later ones. It builds the config's own SceDataModule and calls the same
`load_clip` that training calls, so the cache keys are exactly the ones training will look up.

    sce data cache --config experiments/paper000_dora.yaml --set data.manifest=DATA/manifest.jsonl \\
        [--set data.fps=5] [--splits train val] [--workers 8]
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from typing import Any

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


def datamodule_from_config(config: dict[str, Any], path: str):
    """The config's SceDataModule, its processor linked to model.model_path as in `sce fit`."""
    from sce.budget import model_path_of
    from sce.data.datamodule import SceDataModule

    data = dict(config.get("data") or {})
    if not data.get("cache_dir"):
        raise ValueError(f"{path}: field 'data.cache_dir' is not set (--set data.cache_dir=DIR)")
    data["processor_path"] = model_path_of(config)
    try:
        return SceDataModule(**data)
    except TypeError as err:
        raise ValueError(f"{path}: section 'data': {err}") from err


def prefill_cache(config: dict[str, Any], path: str, splits: Sequence[str], workers: int) -> int:
    """Fill the config's frame cache for `splits`; prints a summary, returns the exit code."""
    from sce.data.schema import ManifestError

    datamodule = datamodule_from_config(config, path)
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
    from sce.budget import add_set_argument

    parser.add_argument("--config", required=True, help="experiment YAML (reads data and model)")
    add_set_argument(parser, "override a config value, e.g. data.cache_dir=runs/cache/frames")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (0: inline)")


def cache_command(args: argparse.Namespace) -> int:
    from sce.budget import load_config

    try:
        config = load_config(args.config, args.sets)
        return prefill_cache(config, args.config, args.splits, args.workers)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"sce data cache: {err}")
        return 2
