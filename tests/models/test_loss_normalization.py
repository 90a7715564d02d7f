"""Training loss normalised over the effective batch (all accumulation steps and ranks).

An MCQ answer is a few tokens, a caption dozens: averaging per-micro-batch token means over
accumulation steps (and ranks) weighs each MCQ token many times more than a caption token. With
`loss_normalization="effective_batch"` the gradient of an accumulated (or data-parallel) step
equals the token-mean gradient of the whole effective batch taken at once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cpu_trainer
from helpers.paths import REPO
from torch.utils.data import DataLoader

from sce.data.channels import TelemetryChannel
from sce.data.collate import Collator
from sce.data.dataset import Sample
from sce.data.prompts import build_user_content
from sce.models.module import SceModule, token_weighted
from sce.tasks.caption import CAPTION_QUESTION
from sce.tasks.events import EVENT_QUESTION, mcq_answer

CAPTION = (
    "The ego vehicle drives straight in the right lane at moderate speed on a dry road. A white "
    "sedan ahead brakes hard, the gap closes within a second, and the ego car swerves left "
    "onto the shoulder, stopping a few metres behind the sedan without contact."
)


def _sample(name: str, question: str, answer: str, task: str) -> Sample:
    rng = np.random.default_rng(len(name))
    frames = rng.integers(0, 255, (2, 56, 56, 3), dtype=np.uint8)
    content, videos = build_user_content(
        frames, np.arange(2) / 3 + 4, [TelemetryChannel(None)], question
    )
    return Sample(name, content, videos, 3.0, answer, task, "near_collision")


@pytest.fixture(scope="module")
def micro_batches(tiny_processor) -> tuple[dict, dict, dict]:
    """(mcq micro-batch, caption micro-batch, both as one batch)."""
    mcq = _sample("m", EVENT_QUESTION, mcq_answer("near_collision"), "mcq")
    caption = _sample("caption", CAPTION_QUESTION, CAPTION, "caption")
    collate = Collator(tiny_processor, 4096)
    return collate([mcq]), collate([caption]), collate([mcq, caption])


def _module(kit: Path, normalization: str) -> SceModule:
    return SceModule(
        str(kit), finetuning="full", dtype="float32", lr=1e-3, loss_normalization=normalization
    )


def reference_gradients(kit: Path, batch: dict) -> dict[str, torch.Tensor]:
    """Token-mean CE gradient of one batch, by plain autograd."""
    module = _module(kit, "micro_batch")
    module.configure_model()
    module.model.train()
    module.model_step(batch).total.backward()
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}


class GradientProbe(SceModule):
    """Records the gradients the optimizer would step with (after normalisation)."""

    def configure_callbacks(self) -> list:
        return []  # plain list-of-batches loaders: no ClassResampler to track

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        self.seen = {n: p.grad.clone() for n, p in self.named_parameters() if p.grad is not None}


def lightning_gradients(kit: Path, batches: list[dict], normalization: str, tmp_path: Path):
    """Gradients of one optimizer step over `batches` accumulated as micro-batches."""
    module = GradientProbe(
        str(kit), finetuning="full", dtype="float32", loss_normalization=normalization
    )
    trainer = cpu_trainer(
        tmp_path, max_steps=1, accumulate_grad_batches=len(batches), limit_val_batches=0
    )
    loader = DataLoader(batches, batch_size=None, collate_fn=lambda b: b)
    trainer.fit(module, train_dataloaders=loader)
    return module.seen


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b) and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _relative(a: dict, b: dict) -> float:
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in a)
    return (num / sum(float(b[k].pow(2).sum()) for k in b)) ** 0.5


def test_token_counts_differ_by_task(micro_batches):
    mcq, caption, _ = micro_batches
    n_mcq, n_caption = (int((b["labels"] != -100).sum()) for b in (mcq, caption))
    assert n_caption > 5 * n_mcq  # the imbalance the normalisation is about


def test_accumulated_gradient_equals_the_effective_batch_token_mean(
    tiny_kit, micro_batches, tmp_path
):
    """accumulate 2 (MCQ micro-batch + caption micro-batch) == one batch of both, within 1e-5;
    the per-micro-batch mean (the old behaviour) is far from it."""
    mcq, caption, both = micro_batches
    reference = reference_gradients(tiny_kit, both)
    effective = lightning_gradients(tiny_kit, [mcq, caption], "effective_batch", tmp_path)
    assert _max_diff(effective, reference) < 1e-5
    per_micro = lightning_gradients(tiny_kit, [mcq, caption], "micro_batch", tmp_path)
    assert _relative(per_micro, reference) > 0.2


def test_logged_loss_is_the_effective_batch_token_mean(tiny_kit, micro_batches, tmp_path):
    """accumulate 2 (MCQ + caption micro-batches): train/loss, logged once per optimizer step,
    equals the token-mean loss of both samples in one batch within 1e-5 (the objective the
    gradient follows); the mean of the two micro-batch means is far from it."""
    mcq, caption, both = micro_batches
    module = _module(tiny_kit, "micro_batch")
    module.configure_model()
    module.model.train()
    with torch.no_grad():
        reference = module.model_step(both).total.item()
        micro_means = [module.model_step(b).total.item() for b in (mcq, caption)]
    probe = GradientProbe(
        str(tiny_kit), finetuning="full", dtype="float32", loss_normalization="effective_batch"
    )
    trainer = cpu_trainer(tmp_path, max_steps=1, accumulate_grad_batches=2, limit_val_batches=0)
    loader = DataLoader([mcq, caption], batch_size=None, collate_fn=lambda b: b)
    trainer.fit(probe, train_dataloaders=loader)
    logged = trainer.logged_metrics
    assert float(logged["train/loss_step"]) == pytest.approx(reference, abs=1e-5)
    assert float(logged["train/window_tokens"]) == int((both["labels"] != -100).sum())
    assert abs(sum(micro_means) / 2 - reference) > 1e-3  # a micro-batch mean: 100x the tolerance
    assert "train/micro_batch_loss_step" in logged  # the micro-batch mean, renamed


def test_token_weighted_keeps_the_value_and_scales_the_gradient():
    x = torch.tensor(2.0, requires_grad=True)
    loss = token_weighted(x * 3.0, n_tokens=5, accumulation=2)
    assert loss.item() == 6.0
    loss.backward()
    assert x.grad.item() == pytest.approx(3.0 * 5 * 2)


def test_unknown_normalization_is_refused(tiny_kit):
    with pytest.raises(ValueError, match="effective_batch"):
        SceModule(str(tiny_kit), loss_normalization="tokens")


# --------------------------------------------------------------------------- 2 gloo ranks

SCRIPT = r'''
"""DDP on 2 CPU ranks (gloo, forked after the imports): rank r trains on micro-batch r and
rank 0 saves the all-reduced, normalised gradients. Usage: script.py KIT BATCHES OUT."""
import sys

import lightning as L
import torch
from torch.utils.data import DataLoader

from sce.models.module import SceModule

KIT, BATCHES, OUT = sys.argv[1:4]


class Probe(SceModule):
    def configure_callbacks(self):
        return []

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.global_rank == 0:
            grads = {n: p.grad.clone() for n, p in self.named_parameters() if p.grad is not None}
            torch.save(grads, f"{OUT}/grads.pt")

    def train_dataloader(self):
        batches = torch.load(BATCHES, weights_only=False)
        return DataLoader([batches[self.global_rank]], batch_size=None, collate_fn=lambda b: b)


if __name__ == "__main__":
    module = Probe(KIT, finetuning="full", dtype="float32", loss_normalization="effective_batch")
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_fork", max_steps=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0,
        default_root_dir=OUT,
    )
    trainer.fit(module)
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_ranks_match_the_effective_batch_token_mean(tiny_kit, micro_batches, tmp_path):
    """DDP, rank 0 the MCQ micro-batch, rank 1 the caption one: the all-reduced gradient equals
    the token-mean gradient of both samples in one batch, within 1e-5."""
    mcq, caption, both = micro_batches
    torch.save([mcq, caption], tmp_path / "batches.pt")
    script = tmp_path / "ddp_step.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = str(_free_port())
    env.pop("LOCAL_RANK", None)
    args = [sys.executable, str(script), str(tiny_kit), str(tmp_path / "batches.pt"), str(tmp_path)]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    ddp = torch.load(tmp_path / "grads.pt")
    assert _max_diff(ddp, reference_gradients(tiny_kit, both)) < 1e-5
