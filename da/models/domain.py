"""Domain classifier: an MLP over (M, C) feature rows, one logit (target vs source)."""

from __future__ import annotations

import torch
from torch import nn


class DomainClassifier(nn.Module):
    def __init__(self, in_features: int, hidden: list[int], dropout: float = 0.0,
                 zero_init: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))  # no hidden layer = logistic regressor (shallow DANN)
        self.net = nn.Sequential(*layers)
        if zero_init:  # the DANN authors' shallow domain regressor starts at w = 0, d = 0
            for layer in layers:
                if isinstance(layer, nn.Linear):
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.net(rows).squeeze(-1)
