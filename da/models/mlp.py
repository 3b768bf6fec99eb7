"""Fully connected network over flat inputs (the two-moons net: one hidden layer of 15)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from da.config_schema import ModelConfig
from da.models import MODELS, ModelParts
from da.registry import register

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass
class MLPConfig(ModelConfig):
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [15])
    activation: str = "sigmoid"  # the paper's shallow DANN uses sigmoid units
    # default: PyTorch's Linear init | glorot: uniform +-sqrt(6 / (fan_in + fan_out))
    # weights and zero biases, as the DANN authors' numpy code initialises its network.
    init: str = "default"

    def validate(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got '{self.activation}'")
        if self.init not in ("default", "glorot"):
            raise ValueError(f"init must be default or glorot, got '{self.init}'")
        if not self.hidden:
            raise ValueError("hidden needs at least one layer: the features live there")


class MLPFeatures(nn.Module):
    def __init__(self, in_features: int, hidden: list[int], activation: str, input_key: str):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_features, h), ACTIVATIONS[activation]()]
            in_features = h
        self.net = nn.Sequential(*layers)
        self.num_features = in_features
        self.input_key = input_key

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch[self.input_key].flatten(1))


@register(MODELS, "mlp", MLPConfig)
def build_mlp(cfg: MLPConfig, data) -> ModelParts:
    in_features = 1
    for s in data.input_shape:
        in_features *= s
    cfg.validate()
    features = MLPFeatures(in_features, list(cfg.hidden), cfg.activation, data.input_key)
    head = nn.Linear(features.num_features, data.num_classes)
    if cfg.init == "glorot":
        for layer in [*features.net, head]:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return ModelParts(features, head)
