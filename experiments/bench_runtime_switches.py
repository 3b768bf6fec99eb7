"""The trainer's speed switches measured side by side on this machine (issue 14).

    OMP_NUM_THREADS=1 python experiments/bench_runtime_switches.py --rounds 5

Training steps (forward + backward + SGD step) of a torchvision ResNet-18 on 64 px image
batches of 16 (the transfer / 2D image size class), with each switch of da.train alone:
plain, channels_last (NHWC), torch.compile (nn.Module.compile, as train.compile=true does),
and bf16 autocast (train on CUDA only; on the CPU it is measured here for the record).
Interleaved rounds (plain, A, B, ... then again) so machine noise hits all alike; the
printed ratios are steps/s relative to plain in the same round, median over rounds.
Writes experiments/results/benchmarks/bench_runtime_switches.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torchvision

REPO = Path(__file__).resolve().parent.parent


def make(variant: str, device: torch.device):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).to(device)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    if variant == "compile":
        model.compile()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(16, 3, 64, 64, device=device)
    if variant == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (16,), device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if variant == "bf16_autocast" else nullcontext()

    def step():
        with amp:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def steps_per_second(step, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    variants = ["plain", "channels_last", "compile", "bf16_autocast"]
    steps = {}
    t0 = time.perf_counter()
    for v in variants:  # build and warm up (compile happens here, timed separately)
        steps[v] = make(v, device)
        w = time.perf_counter()
        for _ in range(3):
            steps[v]()
        print(f"{v}: warm-up {time.perf_counter() - w:.1f} s", flush=True)
    ratios = {v: [] for v in variants}
    rates = {v: [] for v in variants}
    for r in range(args.rounds):
        got = {v: steps_per_second(steps[v], args.steps) for v in variants}
        for v in variants:
            rates[v].append(got[v])
            ratios[v].append(got[v] / got["plain"])
        print(f"round {r + 1}: " + ", ".join(f"{v} {got[v]:.2f}/s" for v in variants), flush=True)
    lines = ["# Speed switches of the trainer, side by side", "",
             f"`python {' '.join(sys.argv)}` (torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
             f"device {device}; ResNet-18, 64 px, batch 16, {args.steps} steps x {args.rounds} interleaved rounds; "
             f"total {time.perf_counter() - t0:.0f} s; other jobs were running on the machine).", "",
             "| switch | steps/s (median) | ratio to plain (median over rounds) | default |", "|---|---|---|---|"]
    for v in variants:
        lines.append(f"| {v} | {statistics.median(rates[v]):.2f} | {statistics.median(ratios[v]):.2f}x | off |")
    text = "\n".join(lines) + "\n"
    (REPO / "experiments/results/benchmarks/bench_runtime_switches.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
