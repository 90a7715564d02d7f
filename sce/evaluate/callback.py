"""Generation-based evaluation: the numbers the papers report, computed during training.

Token-level accuracy says little in this domain; what counts is the class the model *says*.
Every `every_n_epochs` validation epochs (and at test), the callback generates answers for the
split's fixed evaluation subset: at validation `max_samples` items or `per_class` clips of each
class, at test the whole split (a paper's table comes from its whole test set) or `per_class`
clips of each class (paper 001's test set: 66 of each), stratified by class and source and drawn
once from data.eval_seed (sce.data.subset), the same in every epoch, run and rank count (sharded
across ranks, gathered on every rank), parses them,
and logs namespaced scalars in sections (`val_gen/acc`, `val_gen_class/f1/collision`, per source,
IMU setting and scorer: sce.evaluate.dashboard.scalar_tag), the confusion matrix, reliability
diagram and the binary alarm's precision-recall curve as images
(items of binary-scope records, e.g. Nexar, count only in `binary/*`; see sce.evaluate.summary),
the alarm's curve also in TensorBoard's PR CURVES tab, a text table of sample generations (all at
the step of their scalars, sce.evaluate.media), and writes `metrics.json` (latest),
`evaluations/<split>_step<N>.json` and `evaluations/<split>_step<N>_alarm_pr_curve.png` in the
run folder. At the start of fit / validate / test it writes the CUSTOM SCALARS dashboard
(sce.evaluate.dashboard). No `hp_metric` card: the TensorBoard logger's placeholder (-1 at step
0, `default_hp_metric`) is turned off for the run (`no_hp_metric`), and `sce sweep` writes
HParams sessions whose metrics are the evaluation tags themselves.

BERTScore (captions, instructions) needs a local encoder: `bertscore_model`, else the folder in
$SCE_BERTSCORE_MODEL, read at `bertscore_layer` (default: bert-score's recommended layer for the
model). Without one, the run says once at the start of fit / validate / test that BERTScore is
skipped. Reasoning items (a think trace, then the answer) get their own, longer generation budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from tqdm import tqdm

from sce.evaluate.dashboard import metric_key, scalar_tag, write_dashboard
from sce.evaluate.media import MediaLogger, tensorboard_writer
from sce.evaluate.summary import Summary, json_safe, summarize
from sce.metrics.text import BERTSCORE_MODEL_ENV, BERTScoreEncoder, resolve_bertscore_encoder
from sce.tasks import REASONING, TASKS

# The reasoning task's generation budget (a think trace, then the answer; sce.tasks.reasoning).
REASONING_MAX_NEW_TOKENS = REASONING.max_new_tokens
# figures also saved as PNG in evaluations/: the binary alarm's precision-recall curve (a safety
# detector is chosen by its operating point)
SAVED_FIGURES = ("alarm_pr_curve",)


class GenerationEvaluation(Callback):
    """Evaluate generated answers.

    Args:
        every_n_epochs: run at the end of every n-th validation epoch (0: only at test).
        max_samples: items per validation (None: the whole split), stratified by class and
            source; a clip brings all its items (tasks x IMU settings). Test scores the whole
            test split.
        per_class: instead of max_samples, this many clips of every class, at validation and
            test (paper 001's test set: 66 per class).
        max_new_tokens: generation length (None: the module's max_new_tokens).
        num_text_samples: rows of the sample-generation table logged to TensorBoard.
        bertscore_model: local folder of a BERT-style encoder for BERTScore (None: the folder
            in $SCE_BERTSCORE_MODEL; neither: BERTScore skipped, said once at start).
        bertscore_layer: the encoder layer BERTScore matches (None: bert-score's recommended
            layer for the model, e.g. 17 for roberta-large; the last layer for a model not in
            its table).
        reasoning_max_new_tokens: generation length of items answered after a think trace
            (reasoning, reasoning_vqa); they get the larger of this and the answer budget. A batch's budget is the
            largest of its items' (the evaluation items are ordered by task, so reasoning items
            share batches).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_samples: int | None = 256,
        max_new_tokens: int | None = None,
        num_text_samples: int = 8,
        bertscore_model: str | None = None,
        per_class: int | None = None,
        bertscore_layer: int | None = None,
        reasoning_max_new_tokens: int = REASONING_MAX_NEW_TOKENS,
    ):
        if max_samples is not None and per_class is not None:
            raise ValueError(
                "GenerationEvaluation: set max_samples or per_class, not both "
                f"(got max_samples={max_samples}, per_class={per_class})"
            )
        self.per_class = per_class
        self.every_n_epochs = every_n_epochs
        self.max_samples = max_samples
        self.max_new_tokens = max_new_tokens
        self.num_text_samples = num_text_samples
        self.bertscore_model = bertscore_model
        self.bertscore_layer = bertscore_layer
        self.reasoning_max_new_tokens = reasoning_max_new_tokens
        self.bertscore: BERTScoreEncoder | None = None
        self._bertscore_resolved = False
        self.last: dict[str, Summary] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Resolve the BERTScore encoder once per fit / validate / test, so a bad folder fails
        before training and a missing one is said once, not every epoch."""
        check_monitor(trainer)
        if getattr(trainer, "loggers", None):
            no_hp_metric(trainer)
            writer = tensorboard_writer(trainer)
            if writer is not None and trainer.is_global_zero:
                write_dashboard(writer)
        self.bertscore = self._resolve_bertscore()
        if self.bertscore is not None:
            rank_zero_info(f"GenerationEvaluation: {self.bertscore.describe()}")
            return
        evaluates = stage != "fit" or self.every_n_epochs > 0
        needing = [t for t in _eval_tasks(trainer) if t in TASKS and TASKS[t].uses_bertscore]
        if evaluates and needing:
            rank_zero_warn(
                f"GenerationEvaluation: BERTScore is skipped for {', '.join(needing)} (no "
                "encoder configured). To enable it, set the callback's bertscore_model (e.g. "
                "--trainer.callbacks.init_args.bertscore_model) or the environment variable "
                f"{BERTSCORE_MODEL_ENV} to a local encoder folder (e.g. roberta-large saved with "
                "save_pretrained)."
            )

    def _resolve_bertscore(self) -> BERTScoreEncoder | None:
        self._bertscore_resolved = True
        return resolve_bertscore_encoder(self.bertscore_model, self.bertscore_layer)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.every_n_epochs <= 0:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.evaluate(trainer, pl_module, "test")

    # ------------------------------------------------------------------ core
    def evaluate(self, trainer: Trainer, pl_module: LightningModule, split: str) -> Summary:
        results = self.generate(trainer, pl_module, split)
        if not self._bertscore_resolved:  # evaluate() called outside a Trainer stage
            self.bertscore = self._resolve_bertscore()
        encoder = self.bertscore
        summary = summarize(
            results,
            bertscore_model=None if encoder is None else encoder.path,
            bertscore_layer=None if encoder is None else encoder.num_layers,
        )
        self.last[split] = summary
        for name, value in summary.scalars.items():
            tag = scalar_tag(split, name)
            pl_module.log(tag, float(value), sync_dist=False, rank_zero_only=True)
        self._write(trainer, pl_module, split, summary)
        return summary

    def subset(self, split: str) -> tuple[int | None, int | None]:
        """(max_samples, per_class) of a split's evaluation: max_samples at validation only
        (test scores the whole split; every table gives its n), per_class at both."""
        return (self.max_samples if split == "val" else None), self.per_class

    def generate(self, trainer: Trainer, pl_module: LightningModule, split: str) -> list[dict]:
        max_samples, per_class = self.subset(split)
        budgets = self.token_budgets(pl_module.hparams.get("max_new_tokens", 64))
        if trainer.fast_dev_run:  # a smoke test: one short batch exercises the whole path
            max_samples, per_class = trainer.datamodule.eval_batch_size, None
            budgets = {task: min(n, 16) for task, n in budgets.items()}
        loader = trainer.datamodule.generation_dataloader(
            split, max_samples, trainer.global_rank, trainer.world_size, per_class=per_class
        )
        results: list[dict[str, Any]] = []
        bar = tqdm(loader, desc=f"generate {split}", leave=False, disable=trainer.global_rank != 0)
        for batch in bar:
            budget = max(
                (budgets.get(m["task"], budgets["*"]) for m in batch.get("meta", [])),
                default=budgets["*"],
            )
            batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
            results.extend(pl_module.generate_batch(batch, budget))
        return _gather(results)

    def token_budgets(self, module_default: int) -> dict[str, int]:
        """max_new_tokens per task ("*": every task without a budget of its own): the callback's
        max_new_tokens (else the module's); a task with its own budget (`Task.max_new_tokens`)
        at least that; items answered after a think trace (`Task.thinks_first`: reasoning,
        reasoning_vqa) at least reasoning_max_new_tokens."""
        answer = self.max_new_tokens or module_default
        budgets = {"*": answer}
        for name, task in TASKS.items():
            if task.thinks_first:
                budgets[name] = max(answer, self.reasoning_max_new_tokens)
            elif task.max_new_tokens:
                budgets[name] = max(answer, task.max_new_tokens)
        return budgets

    @rank_zero_only
    def _write(
        self, trainer: Trainer, pl_module: LightningModule, split: str, summary: Summary
    ) -> None:
        step = evaluated_step(trainer, pl_module)
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"split": split, "epoch": trainer.current_epoch, "step": step, **summary.to_json()}
        (run_dir / "evaluations").mkdir(exist_ok=True)
        _write_json(run_dir / "evaluations" / f"{split}_step{step}.json", record)
        _write_json(run_dir / "metrics.json", record)
        for name, figure in summary.figures.items():
            if name in SAVED_FIGURES:  # next to the evaluation JSON, for the paper / a report
                figure.savefig(run_dir / "evaluations" / f"{split}_step{step}_{name}.png")
        media = MediaLogger(trainer)  # at the step of the scalars just logged
        media.images(f"{split}_gen", summary.images())
        media.text(f"{split}_gen/samples", summary.samples_markdown(self.num_text_samples))
        if summary.alarm is not None:
            media.pr_curve(f"{split}_gen/alarm/pr_curve", *summary.alarm)
        media.flush()


def evaluated_step(trainer: Trainer, pl_module: LightningModule) -> int:
    """The training step of the weights being evaluated: the trainer's during fit, else the
    restored checkpoint's (`sce test --ckpt last` of a step-3 run writes test_step3.json)."""
    if trainer.state.fn == TrainerFn.FITTING:
        return trainer.global_step
    return getattr(pl_module, "checkpoint_step", None) or trainer.global_step


def _eval_tasks(trainer: Trainer) -> tuple[str, ...]:
    """The datamodule's evaluation tasks (data.eval_tasks), () when it declares none."""
    hparams = getattr(getattr(trainer, "datamodule", None), "hparams", None) or {}
    return tuple(hparams.get("eval_tasks", ()))


def no_hp_metric(trainer: Trainer) -> None:
    """Turn off the TensorBoard loggers' `hp_metric` placeholder (a -1 card at step 0 that
    nothing in sce updates) before Lightning logs the hyperparameters (after the setup hooks).
    The logger takes it only as `default_hp_metric` (Lightning's default: on) at construction,
    so it is set here for every run this callback watches, whatever its config says."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger._default_hp_metric = False  # the attribute the constructor argument sets


def check_monitor(trainer: Trainer) -> None:
    """A checkpoint monitor naming an evaluation scalar must use its logged tag (the tag of a
    per-class, per-IMU, per-source or log-likelihood metric has its section in the prefix):
    `val_gen/f1/collision` would never be logged, so fail before training, naming the tag."""
    monitor = getattr(getattr(trainer, "checkpoint_callback", None), "monitor", None) or ""
    head = monitor.partition("/")[0]
    if "/" not in monitor or not (head.endswith("_gen") or "_gen_" in head):
        return
    split = head.partition("_gen")[0]
    tag = scalar_tag(split, metric_key(monitor))
    if tag != monitor:
        raise ValueError(
            f"ModelCheckpoint(monitor={monitor!r}): that metric is logged as {tag!r} "
            "(sce.evaluate.dashboard.scalar_tag); set monitor to it"
        )


def _gather(results: list[dict]) -> list[dict]:
    """All ranks' results on every rank (identity without torch.distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return results
    gathered: list[list[dict]] = [[] for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather_object(gathered, results)
    return [r for part in gathered for r in part]


def _write_json(path: Path, data: dict) -> None:
    """Write strict JSON (atomically): non-finite numbers become null, never a bare NaN, which
    Python's json writes by default but no strict JSON parser reads."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False))
    tmp.replace(path)
