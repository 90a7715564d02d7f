"""The LightningModule: a Hugging Face image-text-to-text VLM with PEFT adapters.

One `model_step` serves train, validation and test (teacher-forced losses). Generation and
option scoring for the evaluation metrics live in `generate_batch`, called by the evaluation
callback. Checkpoints hold only the trainable parameters (adapters), plus optimizer and loop
state; the frozen base is reloaded from `model_path`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, Literal

import lightning as L
import torch

from sce.common.choices import check_choice
from sce.common.labels import OPTION_LETTERS
from sce.data.collate import DATA_PROBLEM_COUNTS, digit_token_ids
from sce.models import adapters as adapter_lib
from sce.models import losses as loss_lib
from sce.models.adapters import AdapterMode, AttnImplementation, TargetPreset
from sce.models.base_identity import BASE_IDENTITY_KEY, base_identity, check_base_identity
from sce.models.families import family_for
from sce.models.neftune import NEFTune
from sce.models.precision import DTYPES, DtypeName, dtype_name, resolve_dtype
from sce.tasks.base import MSE_TERM, scope_of
from sce.tasks.events import label_order_probs, wording_of
from sce.tasks.mix import adds_loss_term, trained_tasks

# The string options of SceModule: the `sce fit` parser offers and checks these choices.
Finetuning = Literal[AdapterMode, "none"]  # "none": the base model as is (zero-shot)
Scheduler = Literal["cosine", "cosine_with_restarts", "linear", "constant"]  # transformers names
LossNormalization = Literal["effective_batch", "micro_batch"]

LOAD_DTYPE_KEY = "sce_load_dtype"  # checkpoint key: the dtype the run loaded its base in
OPTION_CHOICES = {
    "finetuning": Finetuning,
    "dtype": DtypeName,
    "attn_implementation": AttnImplementation,
    "scheduler": Scheduler,
    "loss_normalization": LossNormalization,
}


class SceModule(L.LightningModule):
    """Fine-tunes a VLM on safety-critical event prompts.

    Args:
        model_path: folder or hub id for `AutoModelForImageTextToText.from_pretrained`, or
            `tiny:SEED` for the offline tiny kit (resolved by the config layer, sce/train/assets.py).
        finetuning: "dora" (paper 000), "lora", "full" (LM trained, vision frozen), "qlora", or
            "none" (the base model as is: zero-shot baselines with the same prompts).
        rank: adapter rank r (paper 000: DoRA r=32).
        alpha: adapter scaling alpha (paper 000: 64); the update is scaled by alpha / rank.
        dropout: dropout on the adapter input (paper 002: 0.10).
        targets: "all" (q,k,v,o,gate,up,down of the LM), "qv" or "qkvo" (paper 002), or a
            list of those projection names.
        train_vision: train the vision tower too (frozen in every paper recipe).
        train_merger: train the vision-language merger (projector) too (frozen by default).
        dtype: weights dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float32".
        attn_implementation: "auto" (flash_attention_2 when installed and on CUDA, else sdpa).
        neftune_alpha: NEFTune noise alpha (paper 000: 5); 0 disables.
        mse_weight: weight of the probability task's MSE term next to cross-entropy (paper 002:
            5).
        pos_weight: MSE weight of positive (collision) targets (paper 002: 3).
        lr: AdamW learning rate (peak, after warmup).
        weight_decay: AdamW weight decay (decoupled).
        betas: AdamW betas.
        scheduler: "cosine", "cosine_with_restarts", "linear" or "constant" (transformers'
            schedulers, stepped per optimizer step).
        warmup_ratio: fraction of the optimizer steps spent in linear warmup (paper 002: 0.1).
        num_cycles: restarts of "cosine_with_restarts".
        gradient_checkpointing: recompute activations (use_reentrant=False).
        max_new_tokens: generation length for evaluation.
        loss_normalization: "effective_batch" (default): the training loss is normalised by the
            supervised tokens of the whole effective batch (every accumulation step and rank),
            as Hugging Face's Trainer does since its 2024 gradient-accumulation fix;
            "micro_batch": each micro-batch's token mean, averaged over accumulation steps and
            ranks (Lightning's default, kept for comparison). See `token_weighted`. Under
            "effective_batch", train/loss is the window's token-mean loss, logged once per
            optimizer step, and (with gradient accumulation) train/micro_batch_loss each
            micro-batch's mean.
        max_nonfinite_steps: training batches whose loss is NaN or infinite are skipped (they
            add no gradient; an optimizer step left without any batch updates nothing), counted
            as train/nonfinite_skipped and named (their sample ids) in a warning; one more than
            this many over the run stops it with an error.
    """

    def __init__(
        self,
        model_path: str,
        finetuning: Finetuning = "dora",
        rank: int = 32,
        alpha: int = 64,
        dropout: float = 0.0,
        targets: TargetPreset | list[str] = "all",
        train_vision: bool = False,
        train_merger: bool = False,
        dtype: DtypeName = "auto",
        attn_implementation: AttnImplementation = "auto",
        neftune_alpha: float = 0.0,
        mse_weight: float = 5.0,
        pos_weight: float = 3.0,
        lr: float = 5e-5,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: Scheduler = "cosine",
        warmup_ratio: float = 0.0,
        num_cycles: int = 1,
        gradient_checkpointing: bool = False,
        max_new_tokens: int = 64,
        loss_normalization: LossNormalization = "effective_batch",
        max_nonfinite_steps: int = 10,
    ):
        check_options(locals())  # the parser's checks, for direct construction
        super().__init__()
        self.save_hyperparameters()
        self.model = None
        # stages logging <stage>/mse; narrowed in setup() from the data settings
        self._mse_stages = {"train", "val", "test"}
        self.tokenizer = None
        self.neftune: NEFTune | None = None
        self.strict_loading = False  # checkpoints hold only the trainable parameters
        self._window_tokens = 0  # supervised tokens of this rank's current accumulation window
        self._window_loss_sum: torch.Tensor | float = 0.0  # sum of loss_i * n_tokens_i there
        self._window_nonfinite = 0  # batches of this rank's window skipped for a non-finite loss
        self.nonfinite_batches = 0  # skipped so far in the run, all ranks (saved in checkpoints)
        self._last_nonfinite: list[str] = []  # sample ids of this rank's last skipped batch

    # ------------------------------------------------------------------ model construction
    def configure_model(self) -> None:
        if self.model is not None:
            return
        # from_pretrained returns eval mode and Lightning keeps module modes as they are at fit
        # start: without this, adapter dropout would silently stay off in training.
        self.model = load_model(self.hparams).train()
        # "auto" resolves per machine (bf16 on CUDA, fp32 on CPU): record what this run loaded,
        # so a checkpoint exported on another machine comes back in the training dtype. Kept
        # out of the hparams: a checkpoint's hyper_parameters are SceModule's init arguments
        # only, which `sce test --ckpt_path` parses back (LightningCLI rejects any other key).
        self._recorded_load_dtype = dtype_name(resolve_dtype(self.hparams.dtype))
        # what the checkpoints' adapters belong to: refused on another base (base_identity)
        self._base_identity = base_identity(self.hparams.model_path)
        self.tokenizer = load_tokenizer(self.hparams.model_path)
        self.digit_ids = digit_token_ids(self.tokenizer)
        self.option_ids = option_token_ids(self.tokenizer)
        if self.hparams.neftune_alpha > 0:
            markers = family_for(adapter_lib.unwrap_model(self.model).config).markers
            skip = [self.tokenizer.convert_tokens_to_ids(t) for t in markers.placeholders]
            self.neftune = NEFTune(self.hparams.neftune_alpha, excluded_token_ids=skip)
            self.neftune.attach(self.model)
        counts = adapter_lib.count_parameters(self.model)
        self.parameter_counts = counts
        print(
            f"[sce] {self.hparams.finetuning}: {counts['trainable']:,} trainable of "
            f"{counts['total']:,} parameters ({counts['trainable_pct']:.2f}%)"
        )
        if _is_fsdp1(self._trainer):  # FSDP1 flat parameters need one dtype per unit
            fsdp1_uniform_fp32(self.model, self.hparams.finetuning)
        if self.device_mesh is not None:  # ModelParallelStrategy: FSDP2 after the adapters exist
            from sce.models.distributed import shard_model

            shard_model(self.model, self.device_mesh, param_dtype=mixed_compute_dtype(self.model))

    def on_fit_start(self) -> None:
        require_fp32_trainable(self, getattr(self._trainer, "precision", None))
        self._check_temporal_rope()
        counts = self.parameter_counts
        for logger in self.loggers:
            logger.log_metrics(
                {"params/trainable": counts["trainable"], "params/total": counts["total"]}, step=0
            )

    def on_validation_start(self) -> None:
        self._check_temporal_rope()  # `sce validate`; once per run (fit already checked)

    def _check_temporal_rope(self) -> None:
        """Fail before training on a transformers whose Qwen2.5-VL temporal positions collapse
        the configured window's frames (sce.models.rope_guard); warn when pairs share one."""
        if getattr(self, "_rope_checked", False) or self.model is None:
            return
        from sce.models.rope_guard import check_temporal_rope, window_probe

        window = getattr(getattr(self._trainer, "datamodule", None), "window", None)
        probe = None if window is None else window_probe(window)
        if probe is not None:
            check_temporal_rope(self.model, *probe)
        self._rope_checked = True

    def configure_callbacks(self) -> list:
        """Callbacks every run needs: exact mid-epoch resume (sampler position, RNG states) and
        the training throughput (train/clips_per_sec)."""
        from sce.models.checkpointing import resume_callbacks
        from sce.models.throughput import ClipsPerSecond

        return [*resume_callbacks(), ClipsPerSecond()]

    # ------------------------------------------------------------------ steps
    def model_step(self, batch: dict[str, Any]) -> loss_lib.LossOutput:
        """CE on the answer tokens (+ weighted MSE for probability answers), NEFTune in training."""
        noise = (
            self.neftune.batch(batch["input_ids"], batch["attention_mask"])
            if self.neftune
            else nullcontext()
        )
        with noise:
            return loss_lib.compute_losses(
                self.model,
                batch,
                self.digit_ids,
                mse_weight=self.hparams.mse_weight,
                pos_weight=self.hparams.pos_weight,
            )

    @property
    def load_dtype(self) -> torch.dtype:
        """The dtype the base weights were loaded in when the module was fit (recorded in
        checkpoints as LOAD_DTYPE_KEY), else `model.dtype` resolved on this machine."""
        recorded = getattr(self, "_recorded_load_dtype", None)
        return DTYPES[recorded] if recorded else resolve_dtype(self.hparams.dtype)

    def _logs_window_loss(self) -> bool:
        """Whether train/loss is the effective-batch window loss logged once per optimizer
        step (`on_before_optimizer_step`) rather than the micro-batch mean."""
        return self.hparams.loss_normalization == "effective_batch"

    def _shared_step(self, batch: dict[str, Any], stage: str) -> loss_lib.LossOutput | None:
        self._log_data_problems(batch, stage)
        if batch.get("empty"):
            return None
        out = self.model_step(batch)
        if stage == "train" and not torch.isfinite(out.total.detach()).all():
            self._skip_nonfinite(batch, out.total)
            return None  # no gradient, no log: it would poison the epoch aggregates
        size = batch["input_ids"].shape[0]
        on_step = stage == "train"
        terms = self._loss_terms(out, stage)
        for name, value in terms.items():  # per step in training, per epoch (synced) in eval
            self.log(
                f"{stage}/{name}",
                value,
                prog_bar=name == "loss",
                batch_size=size,
                on_step=on_step,
                on_epoch=True,
                sync_dist=not on_step,
            )
        return out

    def _loss_terms(self, out: loss_lib.LossOutput, stage: str) -> dict[str, torch.Tensor]:
        """The losses `_shared_step` logs, none twice under two names (TensorBoard would show
        duplicate cards): `ce` and `mse` only when the stage adds the MSE term (else `ce` is
        `loss`); in training under effective-batch normalisation the optimised objective is the
        window's token mean, logged as train/loss per optimizer step, and the micro-batch mean
        is logged (as `micro_batch_loss`) only with gradient accumulation (else it is that
        window's loss)."""
        terms: dict[str, torch.Tensor] = {}
        if stage != "train" or not self._logs_window_loss():
            terms["loss"] = out.total
        elif self._accumulation() > 1:
            terms["micro_batch_loss"] = out.total
        if stage in self._mse_stages:
            terms.update(ce=out.ce, mse=out.mse)
        return terms

    def _skip_nonfinite(self, batch: dict[str, Any], loss: torch.Tensor) -> None:
        """Count a training batch whose loss is NaN/inf and name its samples; it is then
        trained as an empty batch (a zero loss: no gradient, and DDP ranks stay in step)."""
        self._window_nonfinite += 1
        self._last_nonfinite = [str(m.get("id")) for m in batch.get("meta", [])]
        count = self.nonfinite_batches + self._window_nonfinite
        warnings.warn(
            f"step {self.global_step}: non-finite training loss ({loss.detach().float().item()})"
            f" on samples {self._last_nonfinite}: batch skipped ({count} on this run so far; "
            f"model.max_nonfinite_steps={self.hparams.max_nonfinite_steps})",
            RuntimeWarning,
            stacklevel=2,
        )
        self.log("train/nonfinite_skipped", 1.0, reduce_fx="sum", on_step=False, on_epoch=True)

    def setup(self, stage: str) -> None:
        """Decide once per run, not per step, which stages log `<stage>/mse`."""
        self._mse_stages = {name for name in ("train", "val", "test") if self._stage_adds_mse(name)}

    def _stage_adds_mse(self, stage: str) -> bool:
        """Whether the stage's task mix has a task adding the MSE term, the probability question
        (then `<stage>/mse` is logged). Decided from the data settings, the same on every rank,
        never per batch: a metric logged on some ranks only would stall the epoch-end sync. True
        without a data module that says otherwise."""
        trainer = self._trainer
        hparams = getattr(getattr(trainer, "datamodule", None), "hparams", None)
        if hparams is None:
            return True
        if stage == "train":
            return adds_loss_term(MSE_TERM, trained_tasks(hparams.get("task_weights")))
        return adds_loss_term(MSE_TERM, hparams.get("eval_tasks") or ())

    def _empty_batch_loss(self) -> torch.Tensor:
        """A zero loss over every trainable parameter, for a batch whose samples were all
        skipped or dropped: returning None would make this rank skip backward while the other
        DDP/FSDP ranks wait in the gradient all-reduce (a hang)."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        return torch.stack([p.sum() for p in trainable]).sum() * 0.0

    def _log_data_problems(self, batch: dict[str, Any], stage: str) -> None:
        for key in DATA_PROBLEM_COUNTS:
            if batch.get(key):
                self.log(
                    f"data/{stage}_{key}",
                    float(batch[key]),
                    reduce_fx="sum",
                    on_step=False,
                    on_epoch=True,
                )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self._shared_step(batch, "train")
        loss = self._empty_batch_loss() if out is None else out.total
        n_tokens = 0 if out is None else out.n_tokens
        self._window_tokens += n_tokens
        self._window_loss_sum = self._window_loss_sum + loss.detach().float() * n_tokens
        if self.hparams.loss_normalization == "micro_batch":
            return loss
        return token_weighted(loss, n_tokens, self._accumulation())

    def _accumulation(self) -> int:
        trainer = self._trainer
        return int(getattr(trainer, "accumulate_grad_batches", 1) or 1) if trainer else 1

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Once per optimizer step, from the window's totals summed over ranks: count the
        batches skipped for a non-finite loss (fail past model.max_nonfinite_steps), drop the
        update of a window left without a supervised token (zero gradients would still move
        AdamW's weights through its moments and weight decay), and, under effective-batch
        normalisation, divide the accumulated token-weighted gradients by the window's tokens
        (before clipping) and log the window's loss sum(loss_i * n_tokens_i) / tokens as
        train/loss: the objective this gradient follows."""
        local = torch.tensor(
            [float(self._window_loss_sum), self._window_tokens, self._window_nonfinite],
            dtype=torch.float32,
            device=self.device,
        )
        reduced = self._trainer.strategy.reduce(local, reduce_op="sum").tolist()
        loss_sum, total, nonfinite = reduced
        self._window_tokens, self._window_loss_sum, self._window_nonfinite = 0, 0.0, 0
        self._count_nonfinite(int(nonfinite))
        if total == 0:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None  # AdamW leaves a parameter without a gradient untouched
            return
        if self.hparams.loss_normalization != "effective_batch":
            return
        # DDP / FSDP average gradients over ranks: multiply that division back.
        factor = self._trainer.world_size / max(total, 1.0)
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.grad.mul_(factor)
        self.log("train/window_tokens", total, on_step=True, on_epoch=False)
        self.log(
            "train/loss",
            loss_sum / max(total, 1.0),
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=1,
        )

    def _count_nonfinite(self, skipped: int) -> None:
        """Add this window's skipped batches (all ranks) to the run's count; past the limit,
        stop the run (every rank raises: the count is all-reduced)."""
        self.nonfinite_batches += skipped
        limit = self.hparams.max_nonfinite_steps
        if skipped and self.nonfinite_batches > limit:
            raise FloatingPointError(
                f"training loss was NaN or infinite in {self.nonfinite_batches} batches, more "
                f"than model.max_nonfinite_steps={limit} (last at step {self.global_step}, "
                f"samples {self._last_nonfinite or 'on another rank'}). Check the data "
                "(`sce data validate`), the learning rate and the precision."
            )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        return self.generate_batch(batch)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_batch(
        self, batch: dict[str, Any], max_new_tokens: int | None = None
    ) -> list[dict]:
        """Greedy answers plus the event-class probabilities from the first answer token.

        The option probabilities come from the same forward pass that produces the first
        generated token: a softmax over the logits of the option letters (A, B, C). Every option
        of the event question starts with its own letter, so this is the answer's log-likelihood
        up to the (deterministic) rest of the option text. They are returned in label order
        (collision, near-collision, normal) whatever the item's event wording.
        """
        if batch.get("empty"):
            return []
        was_training = self.model.training
        self.model.eval()
        with self._precision_context():
            out = self.model.generate(
                **loss_lib.model_inputs(batch, self.model.config),
                max_new_tokens=max_new_tokens or self.hparams.max_new_tokens,
                do_sample=False,
                return_dict_in_generate=True,
                output_logits=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        if was_training:
            self.model.train()
        prompt_len = batch["input_ids"].shape[1]
        texts = self.tokenizer.batch_decode(out.sequences[:, prompt_len:], skip_special_tokens=True)
        first = out.logits[0].float()
        option_probs = torch.softmax(first[:, self.option_ids], dim=-1).cpu()
        results = []
        for i, meta in enumerate(batch["meta"]):
            # letters -> label order: the same metrics whatever the wording's option order
            probs = label_order_probs(option_probs[i].tolist(), scope_of(meta), wording_of(meta))
            results.append({**meta, "prediction": texts[i].strip(), "option_probs": probs})
        return results

    def _precision_context(self):
        """The trainer's forward precision context (bf16 autocast under bf16-mixed).

        Lightning enters it around training/validation/predict steps only; the evaluation
        callback generates from `on_validation_epoch_end`, where fp32 master weights would
        otherwise run the whole LM in fp32 (twice the memory and time, other numerics).
        """
        plugin = getattr(self._trainer, "precision_plugin", None)
        return plugin.forward_context() if plugin is not None else nullcontext()

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        from transformers import get_scheduler

        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            betas=tuple(self.hparams.betas),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        kwargs = {}
        if self.hparams.scheduler == "cosine_with_restarts":
            kwargs["scheduler_specific_kwargs"] = {"num_cycles": self.hparams.num_cycles}
        scheduler = get_scheduler(
            self.hparams.scheduler,
            optimizer,
            num_warmup_steps=int(self.hparams.warmup_ratio * total),
            num_training_steps=total,
            **kwargs,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ------------------------------------------------------------------ checkpoints
    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """`Trainer(gradient_clip_val=...)` by global norm under every strategy, FSDP included.

        Lightning refuses norm clipping under FSDP1 and would clip per shard; see
        sce.models.distributed.clip_gradients. Logs the global gradient norm as train/grad_norm
        on every optimizer step: the pre-clipping norm, or without norm clipping the norm
        itself (clip_grad_norm with an infinite bound: the same cross-shard reduction, every
        gradient multiplied by 1).
        """
        from sce.models.distributed import clip_grad_norm, clip_gradients

        norm = clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
        if norm is None:
            norm = clip_grad_norm(optimizer, math.inf, self._trainer)
        self.log("train/grad_norm", norm.detach().float(), on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trainable parameters: an adapter checkpoint is megabytes, not gigabytes."""
        from sce.models.checkpointing import adapter_only, require_finite

        checkpoint["state_dict"] = adapter_only(self, checkpoint["state_dict"])
        if getattr(self, "_recorded_load_dtype", None):
            checkpoint[LOAD_DTYPE_KEY] = self._recorded_load_dtype
        if getattr(self, "_base_identity", None):
            checkpoint[BASE_IDENTITY_KEY] = self._base_identity
        require_finite(checkpoint["state_dict"])
        checkpoint["sce_nonfinite_batches"] = self.nonfinite_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint trained on another base model than the one at model.model_path
        (`check_base_identity`), or one that lacks a trainable parameter (strict_loading is
        off, so Lightning itself would skip it silently). Under ModelParallelStrategy the
        strategy has already loaded (and removed) the state dict; AdapterModelParallelStrategy
        checks the keys there."""
        from sce.models.checkpointing import check_trainable_keys

        if self.model is not None:  # configure_model ran: this module's base is known
            found = getattr(self, "_base_identity", None)
            recorded = checkpoint.get(BASE_IDENTITY_KEY)
            check_base_identity(recorded, found, self.hparams.model_path, "model.model_path")
        if "state_dict" in checkpoint:
            check_trainable_keys(self, checkpoint["state_dict"])
        self.nonfinite_batches = int(checkpoint.get("sce_nonfinite_batches", 0))
        # validate/test/predict restore the weights but not the loops (global_step stays 0):
        # results are named by the step the weights were trained to
        self.checkpoint_step = int(checkpoint.get("global_step", 0))


def recorded_load_dtype(checkpoint: dict[str, Any]) -> str | None:
    """The dtype a checkpoint's run loaded its base in (checkpoints before LOAD_DTYPE_KEY
    carried it in their hyper_parameters)."""
    return checkpoint.get(LOAD_DTYPE_KEY) or checkpoint.get("hyper_parameters", {}).get(
        "load_dtype"
    )


def token_weighted(loss: torch.Tensor, n_tokens: int, accumulation: int = 1) -> torch.Tensor:
    """`loss` in value, `n_tokens * accumulation * loss` in gradient.

    Effective-batch normalisation without looking ahead: each micro-batch's mean loss is
    backpropagated weighted by its supervised tokens (times the accumulation factor Lightning
    divides by), so the accumulated gradient is that of the token SUM; `on_before_optimizer_step`
    then divides by the window's tokens over all ranks. The value stays the micro-batch mean, so
    logs and progress bars read as before.

    The probability MSE rides on the same weight: a micro-batch contributes
    (n_tokens / N) * (CE_mean + mse_weight * MSE_mean), its paper-002 loss weighted by its share
    of the effective batch's tokens. That is the effective-batch item mean of the MSE whenever
    micro-batches carry the same tokens per probability item (paper 002: every sample is a
    probability answer of fixed format, fixed batch size); a separate item normaliser would need
    the window's item count before the first backward.
    """
    scale = float(n_tokens * accumulation)
    return loss.detach() + (loss - loss.detach()) * scale


def load_tokenizer(model_path: str):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_path).tokenizer


def option_token_ids(tokenizer) -> list[int]:
    """Token id of each event option letter, in option order (A, B, C)."""
    ids = []
    for letter in OPTION_LETTERS:
        encoded = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"option letter {letter!r} is not a single token: {encoded}")
        ids.append(encoded[0])
    return ids


def check_options(args: Mapping[str, Any]) -> None:
    """SceModule's string options (its init `args`) against their Literal choices, as the
    `sce fit` parser checks them: direct construction (notebooks, tests) fails on a typo
    before any weights load."""
    for name, alias in OPTION_CHOICES.items():
        check_choice(f"model.{name}", args[name], alias)
    if isinstance(args["targets"], str):  # a list names projections (checked by adapters)
        check_choice("model.targets", args["targets"], TargetPreset)


def load_model(hparams) -> torch.nn.Module:
    """from_pretrained with dtype/attention from config, then the fine-tuning mode."""
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(hparams.dtype),
        "attn_implementation": adapter_lib.resolve_attn_implementation(hparams.attn_implementation),
    }
    if hparams.finetuning == "qlora":
        kwargs["quantization_config"] = adapter_lib.quantization_config("qlora")
    model = AutoModelForImageTextToText.from_pretrained(hparams.model_path, **kwargs)
    if hparams.finetuning == "none":  # zero-shot baselines: the base model, nothing trains
        return model.requires_grad_(False)
    model = adapter_lib.apply_finetuning(
        model,
        mode=hparams.finetuning,
        rank=hparams.rank,
        alpha=hparams.alpha,
        dropout=hparams.dropout,
        targets=hparams.targets,
        train_vision=hparams.train_vision,
        train_merger=hparams.train_merger,
    )
    keep_master_weights_fp32(model)
    if hparams.gradient_checkpointing:
        adapter_lib.enable_gradient_checkpointing(model)
    return model


# ---------------------------------------------------------------------- fp32 master weights
# AdamW steps applied to bf16 weights round away: bf16 keeps 8 significant bits, so an update
# below ~1/256 of a weight is lost. On the tiny model, 3 steps at lr 1e-5 changed 12.8% of the
# full fine-tune's elements in bf16 against 82.3% in fp32. The trainable parameters are therefore
# kept in float32 (master weights, and AdamW moments in float32 with them) while frozen weights
# stay in the load dtype; bf16 compute comes from autocast (`trainer.precision: bf16-mixed`) or
# FSDP's MixedPrecision (param_dtype). Cost for a 7B full fine-tune (~7B trainable): +14 GB of
# weights and +28 GB of AdamW moments over pure bf16, sharded over the ranks under FSDP. PEFT
# adapters are already float32 (get_peft_model's autocast_adapter_dtype); this keeps them so.


def keep_master_weights_fp32(model: torch.nn.Module, frozen_too: bool = False) -> int:
    """Cast trainable floating-point parameters (all of them with `frozen_too`) to float32 in
    place; returns how many were cast. Tied weights are one Parameter and are cast once."""
    cast = 0
    for param in model.parameters():
        wanted = param.requires_grad or frozen_too
        if wanted and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


def restore_load_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """For inference and export: master weights back to the load dtype (a full fine-tune's 7B
    language model would otherwise be served in fp32). PEFT adapters stay as PEFT keeps them."""
    for name, param in model.named_parameters():
        if param.is_floating_point() and param.dtype != dtype and "lora_" not in name:
            param.data = param.data.to(dtype)


def fsdp1_uniform_fp32(model: torch.nn.Module, finetuning: str) -> int:
    """Cast every floating parameter to float32 for FSDP1; warn with the cost for adapters.

    FSDP1 flattens each unit's parameters into one FlatParameter and refuses mixed dtypes in
    one (torch.distributed.fsdp._flat_param: "Must flatten tensors with uniform dtype"), with
    `use_orig_params=True` too. QwenFSDPStrategy's units are whole decoder layers / vision
    blocks, holding a LoRA/DoRA layer's fp32 adapter next to its frozen base weight, so the
    frozen base goes to fp32 as well (MixedPrecision still computes in bf16). For a full fine-tune
    that is what its fp32 masters cost anyway; for adapters it doubles the frozen base's memory,
    so say so: ModelParallelStrategy (FSDP2) keeps the base in bf16. Returns how many were cast.
    """
    frozen_bytes = sum(
        p.numel() * (4 - p.element_size())
        for p in model.parameters()
        if not p.requires_grad and p.is_floating_point() and p.dtype != torch.float32
    )
    cast = keep_master_weights_fp32(model, frozen_too=True)
    if frozen_bytes and finetuning != "full":
        warnings.warn(
            f"FSDP1 (QwenFSDPStrategy) with finetuning={finetuning!r}: the frozen base weights "
            f"are cast to float32 (+{frozen_bytes / 2**30:.2f} GiB before sharding, about "
            "+14 GiB for a 7B model) because an FSDP1 unit holds one dtype and the adapters are "
            "fp32 masters. Use trainer.strategy: sce.models.distributed."
            "AdapterModelParallelStrategy (FSDP2) to keep the frozen base in bf16.",
            stacklevel=2,
        )
    return cast


def mixed_compute_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The lowest floating dtype among the parameters when they are not all one dtype (FSDP2
    then casts every parameter to it for compute), else None (keep the parameters' own)."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) < 2:
        return None
    return min(dtypes, key=lambda d: torch.finfo(d).bits)


def require_fp32_trainable(module: torch.nn.Module, precision: str | None = None) -> None:
    """Raise ValueError when a trainable parameter is not float32 at fit start.

    The fp32 masters made in `load_model` can be undone afterwards: Lightning's `bf16-true` /
    `16-true` precision converts the whole module (`module.to(bfloat16)`, FSDP included) before
    training starts. Refuse that instead of training a fraction of the weights.
    """
    low = [(n, p.dtype) for n, p in module.named_parameters() if p.requires_grad]
    low = [(n, d) for n, d in low if d != torch.float32]
    if not low:
        return
    name, dtype = low[0]
    raise ValueError(
        f"{len(low)} trainable parameters are stored in {dtype} (e.g. {name!r}) under "
        f"trainer.precision={precision!r}: AdamW updates smaller than the weight's bf16/fp16 "
        "resolution round away, so most of the model would not train. Use trainer.precision: "
        "bf16-mixed with model.dtype: bfloat16 (frozen weights stay bf16, trainable weights are "
        "float32 masters, compute runs in bf16 autocast / FSDP mixed precision); '*-true' "
        "precisions convert every weight to half precision."
    )


def _is_fsdp1(trainer) -> bool:
    from lightning.pytorch.strategies import FSDPStrategy

    return trainer is not None and isinstance(getattr(trainer, "strategy", None), FSDPStrategy)
