"""Issue 18 point 4 (slow): `sce fit` on a model with Qwen2.5-VL-7B's real widths (hidden 3584,
intermediate 18944, 28/4 heads, vocabulary 152,064, vision 1280 x 3420) but 2 language and 2
vision layers, random weights, bf16 on CPU, paper 000's recipe (DoRA r=32 on all LM linears,
NEFTune, gradient checkpointing) for 2 optimizer steps.

Checks: finite losses; the adapters train in float32 and the frozen base stays bfloat16; and no
tensor with the vocabulary as its last dimension is ever allocated with more rows than the step
has supervised tokens (sce.models.losses asks the model for those rows only), recorded by a
TorchDispatchMode that sees every op the process runs, forward, backward and recompute.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
import torch
from helpers.paths import EXPERIMENTS
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from sce.models.families import qwen2_5_vl as tiny
from sce.models.tiny import vocabulary_corpus

VOCAB = tiny.QWEN25_VL_7B_VOCAB
LAYERS = {"num_hidden_layers": 2, "vision_depth": 2}


def build_real_width_kit(out_dir: Path, seed: int = 0) -> Path:
    """The tiny kit's tokenizer and processor around a bf16 model with the 7B's widths and
    vocabulary but 2 language and 2 vision layers (~1.6B parameters, 3.3 GB)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    spec = tiny.TinySpec(**{**tiny.QWEN25_VL_7B, **LAYERS})
    tokenizer = tiny.train_tokenizer(spec.vocab_size, vocabulary_corpus())
    config = tiny.build_config(tokenizer, spec)
    config.text_config.vocab_size = VOCAB  # rows past the tokenizer's ids, as in Qwen's own
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # never materialise the fp32 copy (6.5 GB)
    try:
        model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out_dir)
    tiny.build_processor(tokenizer, spec).save_pretrained(out_dir)
    return out_dir


class VocabAllocations(TorchDispatchMode):
    """Records the shape of every newly allocated tensor (views and in-place results excluded)
    whose last dimension is the vocabulary."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(r.alias_info is not None for r in func._schema.returns):
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.dim() and t.shape[-1] == self.vocab:
                    self.shapes.append((str(func), tuple(t.shape)))
        return out


@pytest.mark.slow
def test_real_width_bf16_fit_computes_supervised_rows_only(
    tmp_path, synthetic_manifest, monkeypatch
):
    from sce.cli import main
    from sce.models import losses
    from sce.models.module import SceModule

    kit = build_real_width_kit(tmp_path / "kit")
    steps: list[dict] = []
    compute_losses = losses.compute_losses

    def recording_losses(model, batch, *args, **kwargs):
        out = compute_losses(model, batch, *args, **kwargs)
        supervised = int(losses.next_token_mask(batch["labels"]).sum())
        steps.append({"rows": supervised, "tokens": batch["labels"].numel(), "loss": out.total})
        return out

    dtypes: dict[str, set[torch.dtype]] = {"trainable": set(), "frozen": set()}

    def record_dtypes(module: SceModule) -> None:
        for _, p in module.named_parameters():
            dtypes["trainable" if p.requires_grad else "frozen"].add(p.dtype)

    monkeypatch.setattr(losses, "compute_losses", recording_losses)
    monkeypatch.setattr(SceModule, "on_train_end", record_dtypes, raising=False)
    monkeypatch.chdir(tmp_path)
    args = [
        "fit", "--config", str(EXPERIMENTS / "paper000_dora.yaml"),
        f"--model.model_path={kit}", "--model.attn_implementation=sdpa",
        f"--data.manifest={synthetic_manifest}", "--data.window.width=56", "--data.window.height=28",
        "--data.num_workers=0", "--data.cache_dir=null", "--data.batch_size=1",
        "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
        "--trainer.accumulate_grad_batches=1", "--trainer.max_steps=2",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--trainer.logger=false", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    tracker = VocabAllocations(VOCAB)
    start = time.perf_counter()
    with tracker:
        assert main(args) == 0
    elapsed = time.perf_counter() - start
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    losses_seen = [float(s["loss"]) for s in steps]
    rows = [s["rows"] for s in steps]
    print(
        f"\nreal-width fit: {elapsed:.0f} s, peak RSS {peak_rss_gib:.2f} GiB, losses {losses_seen}, "
        f"supervised rows {rows} of {[s['tokens'] for s in steps]} tokens, "
        f"vocab-wide allocations {sorted(set(tracker.shapes))}"
    )

    assert len(steps) == 2 and all(torch.isfinite(s["loss"]) for s in steps)
    assert dtypes == {"trainable": {torch.float32}, "frozen": {torch.bfloat16}}
    assert tracker.shapes, "the tracker saw no logits at all"
    for op, shape in tracker.shapes:
        assert len(shape) == 2 and shape[0] in rows, (op, shape, rows)
    assert max(rows) < min(s["tokens"] for s in steps)
