"""AdaBN (Li et al., "Revisiting Batch Normalization for Practical Domain Adaptation", 2016).

No retraining: a trained source model (train.init_from) keeps every weight, and each
BatchNorm layer's running mean and variance are re-estimated on unlabeled target batches,
so at test time target features are normalised with target statistics. The trainer runs
`losses` for its side effect only (updates_parameters = False: no backward pass, no
optimiser step); train.steps x train.batch_size target samples set the statistics.

Statistics are a cumulative average over all batches of the run (BatchNorm momentum
None), started from zero at step 0, so the source statistics are replaced, not blended.
Dropout is off while estimating (it would change the statistics the test sees).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from da.algorithms.base import ALGORITHMS, Algorithm
from da.config_schema import AlgorithmConfig
from da.registry import register


@dataclass
class AdaBNConfig(AlgorithmConfig):
    name: str = "adabn"


def batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@register(ALGORITHMS, "adabn", AdaBNConfig)
class AdaBN(Algorithm):
    uses_target = True
    updates_parameters = False

    def __init__(self, feature_extractor, task_head, cfg: AdaBNConfig):
        super().__init__(feature_extractor, task_head, cfg)
        if not batch_norms(self):
            raise ValueError("adabn: the model has no BatchNorm layer, so there is nothing to adapt")

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:  # BatchNorm estimates statistics; dropout stays off
            for m in self.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd):
                    m.eval()
        return self

    @torch.no_grad()
    def losses(self, source, target, progress):
        layers = batch_norms(self)
        if progress == 0.0:  # a fresh start (a resumed run carries its partial averages)
            for m in layers:
                m.reset_running_stats()
        for m in layers:
            m.momentum = None  # cumulative average; num_batches_tracked counts the batches
        self.predict(target)
        zero = torch.zeros((), device=next(self.parameters()).device)
        return {"task": zero, "total": zero}
