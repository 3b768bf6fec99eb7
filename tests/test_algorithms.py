"""Every registered algorithm computes losses and predictions on tiny data."""

import pytest
import torch

from da.algorithms import ALGORITHMS, build_algorithm
from da.config import load_config
from da.data import build_data
from da.models import build_model


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("dataset,model", [("moons", "mlp"), ("digits", "lenet")])
def test_algorithm_losses_and_predict(name, dataset, model, data_root):
    cfg = load_config(None, [f"algorithm.name={name}", f"data.name={dataset}", f"model.name={model}",
                             f"data.root={data_root}"])
    data = build_data(cfg.data)
    parts = build_model(cfg.model, data)
    alg = build_algorithm(cfg.algorithm, parts.feature_extractor, parts.task_head)
    keys = [(i, 0) for i in range(6)]
    src = data.source_train.__getitems__(keys)
    tgt = data.target_train.__getitems__(keys)
    assert "label" in src and "label" not in tgt  # unlabeled means unlabeled
    losses = alg.losses(src, tgt if alg.uses_target else None, progress=0.5)
    assert {"task", "total"} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    losses["total"].backward()
    grads = [p.grad for p in alg.feature_extractor.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    logits = alg.predict(tgt)
    assert logits.shape == (6, data.num_classes)
