"""TensorBoard writer helpers and results.jsonl (one line per evaluation)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    def __init__(self, run_dir: Path, resume_step: int = 0):
        self.run_dir = run_dir
        self.results_path = run_dir / "results.jsonl"
        # purge_step hides events a killed run logged after its last checkpoint (events AT
        # the checkpoint's step were logged before it was written, so they stay).
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step + 1 if resume_step else None)
        self._truncate_results(resume_step)

    def _truncate_results(self, step: int) -> None:
        """Drop evaluations a killed run made after its last checkpoint (they are redone)."""
        if not self.results_path.exists():
            return
        keep = [r for r in read_results(self.run_dir) if r["step"] <= step]
        tmp = self.results_path.with_name(".results.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.results_path)  # a kill mid-rewrite keeps the old file

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def result(self, record: dict) -> None:
        with open(self.results_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def text(self, tag: str, text: str) -> None:
        # Markdown code block keeps YAML indentation in TensorBoard's text tab.
        self.writer.add_text(tag, "```\n" + text + "\n```", 0)

    def hparams(self, params: dict, metrics: dict[str, float]) -> None:
        self.writer.add_hparams(params, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")

    def embedding(self, features: np.ndarray, domains: list[str], labels: list[int], step: int) -> None:
        meta = [[d, str(y)] for d, y in zip(domains, labels)]
        self.writer.add_embedding(features, metadata=meta, metadata_header=["domain", "label"],
                                  tag="features", global_step=step)

    def cloud(self, tag: str, xyz: np.ndarray, colours: np.ndarray, labels: dict[str, np.ndarray],
              step: int, label_names: dict[int, str]) -> None:
        """A point cloud for Open3D's TensorBoard plugin ("Open3D" tab): positions, colours
        (floats in [0, 1]) and integer per-point properties such as predicted / true labels."""
        from open3d.visualization.tensorboard_plugin import summary  # noqa: F401  (adds add_3d)

        data = {"vertex_positions": xyz[None].astype(np.float32),
                "vertex_colors": (np.clip(colours, 0, 1) * 255).round().astype(np.uint8)[None]}
        data.update({f"vertex_{k}": v.astype(np.int32)[None, :, None] for k, v in labels.items()})
        self.writer.add_3d(tag, data, step, label_to_names=label_names)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An (H, W, 3) uint8 image in TensorBoard's Images tab."""
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def read_results(run_dir: Path) -> list[dict]:
    """Evaluations of a run; a torn last line (killed mid-write) is dropped, other bad lines raise."""
    path = Path(run_dir) / "results.jsonl"
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
    return out


class QuietLogger:
    """RunLogger's interface, writing nothing: ranks > 0 of a torchrun job (only rank 0
    logs, so TensorBoard and results.jsonl hold every point once)."""

    def _nothing(self, *args, **kwargs) -> None:
        return None

    scalars = result = text = hparams = embedding = cloud = image = close = _nothing
