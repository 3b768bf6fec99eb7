"""The DANN paper's MNIST architecture: conv(32,5)-pool-conv(48,5)-pool features,
a 100-100 label predictor (JMLR 2016, Fig. 4 / Sec. 5.2.2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from da.config_schema import ModelConfig
from da.models import MODELS, ModelParts
from da.registry import register


@dataclass
class LeNetConfig(ModelConfig):
    name: str = "lenet"
    channels: list[int] = field(default_factory=lambda: [32, 48])
    batch_norm: bool = False
    dropout: float = 0.0  # on the features, before the heads
    head_hidden: list[int] = field(default_factory=lambda: [100, 100])


class LeNetFeatures(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], channels: list[int], batch_norm: bool,
                 dropout: float, input_key: str):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_shape[0]
        for c in channels:
            layers.append(nn.Conv2d(c_in, c, 5))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        layers.append(nn.Flatten())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            self.num_features = int(self.net(torch.zeros(1, *in_shape)).shape[1])
        self.input_key = input_key

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch[self.input_key])


def mlp_head(in_features: int, hidden: list[int], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_features, h), nn.ReLU(inplace=True)]
        in_features = h
    layers.append(nn.Linear(in_features, out))
    return nn.Sequential(*layers)


@register(MODELS, "lenet", LeNetConfig)
def build_lenet(cfg: LeNetConfig, data) -> ModelParts:
    features = LeNetFeatures(tuple(data.input_shape), list(cfg.channels), cfg.batch_norm,
                             cfg.dropout, data.input_key)
    return ModelParts(features, mlp_head(features.num_features, list(cfg.head_hidden), data.num_classes))
