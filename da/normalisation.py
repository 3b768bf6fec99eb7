"""Input normalisation of images, owned by the network that reads them.

A pretrained backbone expects its inputs scaled as in its own training: torchvision's
ImageNet networks (x / 255 - ImageNet mean) / ImageNet std, the TF EfficientNet-Lite
release (x - 127) / 128. A model config says which (`input_normalisation()`); the image
datasets carry a `normalisation` key that `da.config.resolve` fills from the model when it
is left at `auto`, and refuses when it names another - so the dataset always feeds the
network what its weights were trained on, and the resolved config.yaml records it.
"""

from __future__ import annotations

import torch

# name -> (mean, std) per RGB channel, on images scaled to [0, 1]
NORMALISATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "tf_lite": ((127 / 255,) * 3, (128 / 255,) * 3),  # (x - 127) / 128 for x in 0..255
}
DEFAULT = "imagenet"  # what every image dataset used before models declared their own


def check(name: str) -> None:
    if name != "auto" and name not in NORMALISATIONS:
        raise ValueError(f"normalisation must be auto or one of {', '.join(NORMALISATIONS)}, got '{name}'")


def resolved(name: str) -> str:
    """A data config's value once da.config has resolved it; `auto` left in a config built
    by hand means the default (what every model before EfficientNet-Lite wanted)."""
    return DEFAULT if name == "auto" else name


def of_model(model_cfg) -> str | None:
    """The normalisation a model config's network expects; None = it has no preference
    (a network trained from scratch on whatever it is fed)."""
    wanted = getattr(model_cfg, "input_normalisation", None)
    return wanted() if callable(wanted) else None


class Normalise:
    """uint8 (B, 3, H, W) -> float (B, 3, H, W) in the named normalisation (a picklable
    callable: data loader workers get a copy)."""

    def __init__(self, name: str = DEFAULT):
        if name not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation '{name}' (known: {', '.join(NORMALISATIONS)}); "
                             "an `auto` data.normalisation is resolved by da.config from the model")
        self.name = name
        mean, std = NORMALISATIONS[name]
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std

    def __repr__(self) -> str:
        return f"Normalise({self.name!r})"
