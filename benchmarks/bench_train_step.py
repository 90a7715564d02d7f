"""Training-step benchmark: a Qwen2.5-VL with the real 7B sizes and random weights (no download).

DoRA r=32 (paper 000) and LoRA r=32 on all LM linear layers, gradient checkpointing, bf16,
18-frame 420x240 clips with interleaved telemetry (the paper-000 prompt). Prints, per mode,
`sce plan`'s predicted peak next to the measured one (torch.cuda.max_memory_allocated), step
time, tokens/s and MFU (the plan's FLOPs count over the step time and the GPU's bf16 peak).

    python benchmarks/bench_train_step.py --modes dora,lora,full   # 7B sizes on CUDA (H100/H200)
    python benchmarks/bench_train_step.py --plan-only              # no GPU: the predictions only
    python benchmarks/bench_train_step.py --size tiny --device cpu --steps 2   # smoke run

Weights are random, so the numbers measure speed and memory, not learning.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sce.data.channels import TelemetryChannel
from sce.data.collate import Collator
from sce.data.dataset import Sample
from sce.data.imu import FrameTelemetry
from sce.data.prompts import build_user_content
from sce.models import adapters as adapter_lib
from sce.models.families.qwen2_5_vl import (
    QWEN25_VL_7B,
    QWEN25_VL_7B_VOCAB,
    TinySpec,
    build_config,
    build_processor,
    train_tokenizer,
)
from sce.models.losses import compute_losses
from sce.models.tiny import vocabulary_corpus
from sce.tasks import MCQ
from sce.tasks.events import EVENT_QUESTION, mcq_answer


def build_model(size: str, device: str, dtype: torch.dtype):
    spec = (
        TinySpec(max_pixels=420 * 252)
        if size == "tiny"
        else TinySpec(**QWEN25_VL_7B, max_pixels=420 * 252)
    )
    tokenizer = train_tokenizer(spec.vocab_size, vocabulary_corpus())
    processor = build_processor(tokenizer, spec)
    config = build_config(tokenizer, spec)
    if size != "tiny":
        config.text_config.vocab_size = QWEN25_VL_7B_VOCAB
        config.vision_config.fullatt_block_indexes = [7, 15, 23, 31]
    from transformers import Qwen2_5_VLForConditionalGeneration

    attn = adapter_lib.resolve_attn_implementation("auto" if device == "cuda" else "sdpa")
    config._attn_implementation = attn
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    return model, processor, attn


def make_batch(processor, batch_size: int, device: str) -> dict:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(batch_size):
        frames = rng.integers(0, 255, (18, 252, 420, 3), dtype=np.uint8)
        times = 4.0 + np.arange(18) / 3.0
        tele = FrameTelemetry(
            times, rng.normal(size=(18, 3)), rng.normal(size=18) * 0.01, rng.uniform(5, 20, 18)
        )
        content, videos = build_user_content(
            frames, times, [TelemetryChannel(tele)], EVENT_QUESTION
        )
        samples.append(
            Sample(f"clip{i}", content, videos, 3.0, mcq_answer("collision"), MCQ.name, "collision")
        )
    batch = Collator(processor, max_length=8192)(samples)
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def bench(mode: str, args) -> dict:
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model, processor, attn = build_model(args.size, args.device, dtype)
    model = adapter_lib.apply_finetuning(model, mode=mode, rank=32, alpha=64, targets="all")
    adapter_lib.enable_gradient_checkpointing(model)
    model.train()
    counts = adapter_lib.count_parameters(model)
    batch = make_batch(processor, args.batch_size, args.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.warmup + args.steps):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = compute_losses(model, batch).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    tokens = int(batch["attention_mask"].sum())
    step_s = float(np.median(times))
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
    del model, optimizer
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return {
        "mode": mode,
        "attn": attn,
        "trainable_M": counts["trainable"] / 1e6,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "tokens": tokens,
        "peak_GiB": peak,
        "loss": loss.item(),
    }


# Dense bf16 tensor-core peaks (FLOP/s) for MFU; other GPUs: --peak-tflops.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "A10G": 125e12, "L40S": 362e12}


def predicted(mode: str, batch_size: int, tokens: int) -> dict:
    """sce plan's peak and FLOPs for this benchmark's step (one device, no accumulation)."""
    from sce.train.plan import Setup, plan

    setup = Setup(
        "Qwen/Qwen2.5-VL-7B-Instruct", mode, rank=32, alpha=64, micro_batch=batch_size,
        seq_len=tokens, visual_tokens=1215,
    )  # fmt: skip
    return plan(setup)


def peak_flops(args) -> float:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((v for k, v in PEAK_BF16.items() if k in name), float("nan"))


def plan_only(args) -> None:
    tokens = 2027  # sce budget of the paper-000 item (18 frames + telemetry)
    print(f"no GPU: predictions only (7B sizes, batch {args.batch_size} x {tokens} tokens)")
    for mode in args.modes.split(","):
        p = predicted(mode, args.batch_size, tokens)
        print(f"{mode:<6} predicted peak {p['peak_bytes'] / 2**30:6.1f} GiB  "
              f"FLOPs/step {p['flops_per_device']:.3e}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["7b", "tiny"], default="7b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", default="dora,lora,full")
    parser.add_argument("--plan-only", action="store_true", help="print the predictions only")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU bf16 peak for MFU")
    args = parser.parse_args()
    if args.plan_only or (args.size == "7b" and args.device != "cuda"):
        plan_only(args)
        return
    rows = [bench(mode, args) for mode in args.modes.split(",")]
    print(
        f"Qwen2.5-VL {args.size} sizes, random weights, {args.device}, batch {args.batch_size} "
        f"x 18 frames 420x240 (+ telemetry), gradient checkpointing"
    )
    print(
        f"{'mode':<6} {'attn':<18} {'trainable M':>11} {'step s':>8} {'tokens/s':>10} "
        f"{'tokens':>7} {'peak GiB':>9} {'plan GiB':>9} {'MFU':>6}"
    )
    for r in rows:
        plan_gib, mfu = float("nan"), float("nan")
        if args.size == "7b":
            p = predicted(r["mode"], args.batch_size, r["tokens"] // args.batch_size)
            plan_gib = p["peak_bytes"] / 2**30
            mfu = p["flops_per_device"] / r["step_s"] / peak_flops(args)
        print(
            f"{r['mode']:<6} {r['attn']:<18} {r['trainable_M']:>11.1f} {r['step_s']:>8.3f} "
            f"{r['tokens_per_s']:>10.0f} {r['tokens']:>7} {r['peak_GiB']:>9.1f} {plan_gib:>9.1f} "
            f"{mfu:>6.1%}"
        )


if __name__ == "__main__":
    main()
