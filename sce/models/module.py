"""The LightningModule: a Hugging Face image-text-to-text VLM with PEFT adapters.

One `model_step` serves train, validation and test (teacher-forced losses). Generation and
option scoring for the evaluation metrics live in `generate_batch`, called by the evaluation
callback. Checkpoints hold only the trainable parameters (adapters), plus optimizer and loop
state; the frozen base is reloaded from `model_path`.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import lightning as L
import torch

from sce.assets import resolve_model_path
from sce.data.collate import digit_token_ids
from sce.data.prompts import EVENT_OPTIONS
from sce.models import adapters as adapter_lib
from sce.models import losses as loss_lib
from sce.models.neftune import NEFTune

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SceModule(L.LightningModule):
    """Fine-tunes a VLM on safety-critical event prompts.

    Args:
        model_path: folder or hub id for `AutoModelForImageTextToText.from_pretrained`, or
            `tiny:SEED` for the offline tiny kit (sce/assets.py).
        finetuning: "dora" (paper 000), "lora", "full" (LM trained, vision frozen), "qlora", or
            "none" (the base model as is: zero-shot baselines with the same prompts).
        rank, alpha, dropout: adapter hyperparameters (DoRA r=32, alpha=64 in paper 000).
        targets: "all" (q,k,v,o,gate,up,down of the LM), "qv" or "qkvo" (paper 002).
        train_vision, train_merger: unfreeze the vision tower / the merger (off by default).
        dtype: weights dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float32".
        attn_implementation: "auto" (flash_attention_2 when installed and on CUDA, else sdpa).
        neftune_alpha: NEFTune noise alpha (paper 000: 5); 0 disables.
        mse_weight, pos_weight: probability MSE term weight and positive-class weight (paper 002).
        lr, weight_decay, betas: AdamW.
        scheduler: "cosine", "cosine_with_restarts", "linear" or "constant"; warmup_ratio and
            num_cycles (restarts) as in transformers' schedulers.
        gradient_checkpointing: recompute activations (use_reentrant=False).
        max_new_tokens: generation length for evaluation.
    """

    def __init__(
        self,
        model_path: str,
        finetuning: str = "dora",
        rank: int = 32,
        alpha: int = 64,
        dropout: float = 0.0,
        targets: str = "all",
        train_vision: bool = False,
        train_merger: bool = False,
        dtype: str = "auto",
        attn_implementation: str = "auto",
        neftune_alpha: float = 0.0,
        mse_weight: float = 5.0,
        pos_weight: float = 3.0,
        lr: float = 5e-5,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: str = "cosine",
        warmup_ratio: float = 0.0,
        num_cycles: int = 1,
        gradient_checkpointing: bool = False,
        max_new_tokens: int = 64,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = None
        self.tokenizer = None
        self.neftune: NEFTune | None = None
        self.strict_loading = False  # checkpoints hold only the trainable parameters

    # ------------------------------------------------------------------ model construction
    def configure_model(self) -> None:
        if self.model is not None:
            return
        # from_pretrained returns eval mode and Lightning keeps module modes as they are at fit
        # start: without this, adapter dropout would silently stay off in training.
        self.model = load_model(self.hparams).train()
        self.tokenizer = load_tokenizer(resolve_model_path(self.hparams.model_path))
        self.digit_ids = digit_token_ids(self.tokenizer)
        self.option_ids = option_token_ids(self.tokenizer)
        if self.hparams.neftune_alpha > 0:
            skip = [
                self.tokenizer.convert_tokens_to_ids(t) for t in ("<|video_pad|>", "<|image_pad|>")
            ]
            self.neftune = NEFTune(self.hparams.neftune_alpha, excluded_token_ids=skip)
            self.neftune.attach(self.model)
        counts = adapter_lib.count_parameters(self.model)
        self.parameter_counts = counts
        print(
            f"[sce] {self.hparams.finetuning}: {counts['trainable']:,} trainable of "
            f"{counts['total']:,} parameters ({counts['trainable_pct']:.2f}%)"
        )
        if self.device_mesh is not None:  # ModelParallelStrategy: FSDP2 after the adapters exist
            from sce.models.distributed import shard_model

            shard_model(self.model, self.device_mesh)

    def on_fit_start(self) -> None:
        counts = self.parameter_counts
        for logger in self.loggers:
            logger.log_metrics(
                {"params/trainable": counts["trainable"], "params/total": counts["total"]}, step=0
            )

    def configure_callbacks(self) -> list:
        """Callbacks every run needs for exact mid-epoch resume: sampler position, RNG states."""
        from sce.checkpointing import resume_callbacks

        return resume_callbacks()

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

    def _shared_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        self._log_data_problems(batch, stage)
        if batch.get("empty"):
            return self._empty_batch_loss() if stage == "train" else None
        out = self.model_step(batch)
        size = batch["input_ids"].shape[0]
        on_step = stage == "train"
        terms = {"loss": out.total, "ce": out.ce, "mse": out.mse}
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
        return out.total

    def _empty_batch_loss(self) -> torch.Tensor:
        """A zero loss over every trainable parameter, for a batch whose samples were all
        skipped or dropped: returning None would make this rank skip backward while the other
        DDP/FSDP ranks wait in the gradient all-reduce (a hang)."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        return torch.stack([p.sum() for p in trainable]).sum() * 0.0

    def _log_data_problems(self, batch: dict[str, Any], stage: str) -> None:
        for key in ("skipped", "dropped", "imu_unavailable"):
            if batch.get(key):
                self.log(
                    f"data/{stage}_{key}",
                    float(batch[key]),
                    reduce_fx="sum",
                    on_step=False,
                    on_epoch=True,
                )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._shared_step(batch, "train")

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
        up to the (deterministic) rest of the option text.
        """
        if batch.get("empty"):
            return []
        was_training = self.model.training
        self.model.eval()
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
            results.append(
                {**meta, "prediction": texts[i].strip(), "option_probs": option_probs[i].tolist()}
            )
        return results

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
        sce.models.distributed.clip_gradients. Logs the pre-clipping norm as train/grad_norm.
        """
        from sce.models.distributed import clip_gradients

        norm = clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
        if norm is not None:
            self.log("train/grad_norm", norm.detach().float(), on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trainable parameters: an adapter checkpoint is megabytes, not gigabytes."""
        from sce.checkpointing import adapter_only

        checkpoint["state_dict"] = adapter_only(self, checkpoint["state_dict"])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint that lacks a trainable parameter (strict_loading is off, so
        Lightning itself would skip it silently). Under ModelParallelStrategy the strategy has
        already loaded (and removed) the state dict; AdapterModelParallelStrategy checks there."""
        from sce.checkpointing import check_trainable_keys

        if "state_dict" in checkpoint:
            check_trainable_keys(self, checkpoint["state_dict"])


def load_tokenizer(model_path: str):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_path).tokenizer


def option_token_ids(tokenizer) -> list[int]:
    """Token id of each event option letter, in option order (A, B, C)."""
    ids = []
    for letter in EVENT_OPTIONS:
        encoded = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"option letter {letter!r} is not a single token: {encoded}")
        ids.append(encoded[0])
    return ids


def load_model(hparams) -> torch.nn.Module:
    """from_pretrained with dtype/attention from config, then the fine-tuning mode."""
    from transformers import AutoModelForImageTextToText

    dtype = hparams.dtype
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    kwargs: dict[str, Any] = {
        "dtype": DTYPES[dtype],
        "attn_implementation": adapter_lib.resolve_attn_implementation(hparams.attn_implementation),
    }
    if hparams.finetuning == "qlora":
        kwargs["quantization_config"] = adapter_lib.quantization_config("qlora")
    path = resolve_model_path(hparams.model_path)
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
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
    if hparams.gradient_checkpointing:
        adapter_lib.enable_gradient_checkpointing(model)
    return model
