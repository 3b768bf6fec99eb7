"""Speed of the per-point segmentation backbones (pointnet, pointnet2, dgcnn).

For each model at its default config and each block size N: seconds per training step
(forward, cross-entropy, backward, Adam step) and per inference forward (eval mode, no
grad), median of --repeats runs after one warm-up. All models run in one process on the
same random blocks, so the ratios to PointNet (same N, same run) are meaningful on a
shared, noisy machine; absolute times are not.

    OMP_NUM_THREADS=4 python experiments/bench_point_models.py [--device auto] [--batch 8]
        [--points 1024 2048] [--repeats 5] [--out table.txt]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

from da.models import MODELS, build_model
from da.registry import lookup

MODEL_NAMES = ("pointnet", "pointnet2", "dgcnn")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def median_seconds(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":  # kernels are asynchronous: time their completion
            torch.cuda.synchronize(device)

    fn()  # warm-up: allocator, kernel selection, lazy Adam state
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def random_batch(batch: int, points: int, channels: int, classes: int,
                 device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    coord = torch.rand(batch, points, 3, generator=g) * torch.tensor([1.0, 1.0, 4.0])
    coord[..., :2] -= 0.5  # block-size units, as the block loader emits them
    feat = torch.rand(batch, points, channels, generator=g)
    labels = torch.randint(0, classes, (batch, points), generator=g)
    return {"coord": coord.to(device), "feat": feat.to(device)}, labels.to(device)


def bench(name: str, batch: dict[str, torch.Tensor], labels: torch.Tensor, classes: int,
          repeats: int, device: torch.device) -> tuple[float, float]:
    """(seconds per train step, seconds per inference forward) of one model."""
    torch.manual_seed(0)
    data = types.SimpleNamespace(input_shape=(3 + batch["feat"].shape[2],), num_classes=classes)
    parts = build_model(lookup(MODELS, name, "model").config(), data)
    net = torch.nn.Sequential(parts.feature_extractor, parts.task_head).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(batch), labels).backward()
        opt.step()

    def infer() -> None:
        with torch.inference_mode():
            net(batch)

    net.train()
    train = median_seconds(train_step, repeats, device)
    net.eval()
    return train, median_seconds(infer, repeats, device)


def table(rows: list[tuple[str, int, float, float, float, float]], header: str) -> str:
    lines = [header, "",
             f"{'model':<10} {'N':>5} {'train s/step':>13} {'x pointnet':>11} "
             f"{'infer s/fwd':>12} {'x pointnet':>11}"]
    for name, n, train, train_ratio, infer, infer_ratio in rows:
        lines.append(f"{name:<10} {n:>5} {train:>13.4f} {train_ratio:>11.2f} "
                     f"{infer:>12.4f} {infer_ratio:>11.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda[:N]")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--points", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--channels", type=int, default=3, help="feat channels C (e.g. 3 for RGB)")
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, help="also write the table to this text file")
    args = ap.parse_args()

    device = pick_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    header = (f"device {device} ({where}), torch {torch.__version__}, {torch.get_num_threads()} "
              f"CPU threads, batch {args.batch}, C {args.channels}, median of {args.repeats} "
              "after 1 warm-up")
    rows = []
    for n in args.points:
        batch, labels = random_batch(args.batch, n, args.channels, args.classes, device)
        times = {name: bench(name, batch, labels, args.classes, args.repeats, device)
                 for name in MODEL_NAMES}
        base_train, base_infer = times["pointnet"]
        for name, (train, infer) in times.items():
            rows.append((name, n, train, train / base_train, infer, infer / base_infer))
            print(f"  {name} N={n}: {train:.4f} s/step, {infer:.4f} s/forward", flush=True)
    text = table(rows, header)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
