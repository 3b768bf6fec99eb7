"""Plain supervised training on the labeled stream, no domain term.

Train-on-target ("oracle") is this algorithm fed labeled target data (data.target_labeled).
"""

from __future__ import annotations

from dataclasses import dataclass

from da.algorithms.base import ALGORITHMS, Algorithm
from da.config_schema import AlgorithmConfig
from da.registry import register


@dataclass
class SourceOnlyConfig(AlgorithmConfig):
    name: str = "source_only"


@register(ALGORITHMS, "source_only", SourceOnlyConfig)
class SourceOnly(Algorithm):
    uses_target = False

    def losses(self, source, target, progress):
        task = self.task_loss(self.predict(source), source["label"])
        return {"task": task, "total": task}
