"""2D semantic segmentation: one class per pixel (rebar2d, a user's image folders).

Splits are `da.data.segmentation2d.SegmentationImages`. Evaluation predicts every WHOLE
image with sliding windows of the training crop size (overlap 1/4, logits averaged where
windows overlap), so thin ties are judged at the resolution they were rendered at; PAD
features are the pooled features of each image's centre crop.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from da.contracts import Predictions
from da.data.segmentation2d import SegmentationImages, overlay
from da.inference import eval_mode, forward_batches, pooled
from da.metrics import confusion_matrix
from da.tasks.base import Task, register_task


def window_origins(size: int, crop: int) -> list[int]:
    """Window starts along one axis: stride 3/4 crop, the last window flush with the edge."""
    stride = max(1, (3 * crop) // 4)
    return sorted({*range(0, size - crop + 1, stride), size - crop})


def image_logits(algorithm: nn.Module, dataset: SegmentationImages, i: int, device: torch.device) -> torch.Tensor:
    """(K, H, W) logits of whole image i: sliding windows, overlapping logits averaged."""
    h, w = dataset.images.shape[2:]
    c = dataset.crop
    x = dataset.whole_image(i)
    windows = [(t, left) for t in window_origins(h, c) for left in window_origins(w, c)]
    batches = ({dataset.input_key: x[..., t:t + c, left:left + c]} for t, left in windows)
    total = torch.zeros(dataset.num_classes, h, w, device=device)
    count = torch.zeros(1, h, w, device=device)
    for (t, left), (_, _, logits) in zip(windows, forward_batches(algorithm, batches, device)):
        total[:, t:t + c, left:left + c] += logits[0].float()
        count[:, t:t + c, left:left + c] += 1
    return total / count


def centre_crop_features(algorithm: nn.Module, dataset: SegmentationImages, n: int,
                         device: torch.device) -> np.ndarray:
    """(min(n, N), C) pooled features of the first images' centre crops."""
    batches = (dataset.__getitems__([(i, 0)]) for i in range(min(n, len(dataset))))
    feats = [pooled(f).float().cpu().numpy() for _, f, _ in forward_batches(algorithm, batches, device)]
    return np.concatenate(feats)


@register_task("segmentation2d")
class Segmentation2d(Task):
    def evaluate(self, algorithm: nn.Module, dataset: SegmentationImages, device: torch.device,
                 max_features: int = 2000) -> Predictions:
        """Confusion matrix over every labeled pixel of every whole image."""
        if dataset.masks is None:
            raise ValueError("evaluation needs masks")
        cm = torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.long)
        for i in range(len(dataset)):
            pred = image_logits(algorithm, dataset, i, device).argmax(0).cpu()
            cm += confusion_matrix(pred, dataset.masks[i], dataset.num_classes)
        feats = centre_crop_features(algorithm, dataset, max_features, device)[:max_features]
        return Predictions(cm, feats, np.full(len(feats), -1), dense=True)

    def pooled_features(self, algorithm: nn.Module, dataset: SegmentationImages, device: torch.device,
                        n: int) -> tuple[np.ndarray, np.ndarray]:
        feats = centre_crop_features(algorithm, dataset, n, device)
        return feats, np.full(len(feats), -1)

    def predict_labels(self, algorithm: nn.Module, dataset: SegmentationImages, index: int,
                       device: torch.device) -> np.ndarray:
        return image_logits(algorithm, dataset, index, device).argmax(0).cpu().numpy()

    def summary_images(self, algorithm: nn.Module, dataset: SegmentationImages, device: torch.device,
                       count: int = 2) -> dict[str, np.ndarray]:
        """input | ground truth | prediction, side by side, for the first `count` images."""
        out = {}
        with eval_mode(algorithm):
            for i in range(min(count, len(dataset))):
                img = dataset.images[i].permute(1, 2, 0).numpy()
                pred = self.predict_labels(algorithm, dataset, i, device)
                truth = dataset.masks[i].numpy() if dataset.masks is not None else np.zeros_like(pred)
                out[f"image_{i}"] = np.concatenate([img, overlay(img, truth), overlay(img, pred)], axis=1)
        return out
