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
    extra = ["model.batch_norm=true"] if (name, model) == ("adabn", "lenet") else []  # AdaBN needs BN
    cfg = load_config(None, [f"algorithm.name={name}", f"data.name={dataset}", f"model.name={model}",
                             f"data.root={data_root}", *extra])
    data = build_data(cfg.data)
    parts = build_model(cfg.model, data)
    if name == "adabn" and not extra:  # the MLP has no BatchNorm: a clear refusal
        with pytest.raises(ValueError, match="no BatchNorm"):
            build_algorithm(cfg.algorithm, parts.feature_extractor, parts.task_head)
        return
    if name == "dann_stages":  # encoder stages only segmentation U-Nets expose (tests/test_segmentation2d.py)
        with pytest.raises(ValueError, match="needs a feature extractor with stage_features"):
            build_algorithm(cfg.algorithm, parts.feature_extractor, parts.task_head)
        return
    alg = build_algorithm(cfg.algorithm, parts.feature_extractor, parts.task_head)
    keys = [(i, 0) for i in range(6)]
    src = data.source_train.__getitems__(keys)
    tgt = data.target_train.__getitems__(keys)
    assert "label" in src and "label" not in tgt  # unlabeled means unlabeled
    before = {k: v.clone() for k, v in alg.state_dict().items()}
    alg.train()
    losses = alg.losses(src, tgt if alg.uses_target else None, progress=0.5)
    assert {"task", "total"} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    if not alg.updates_parameters:  # AdaBN / prior_em: state moves, no weight, nothing to back-propagate
        assert not losses["total"].requires_grad
        moved = [k for k, v in alg.state_dict().items() if not torch.equal(v, before[k])]
        weights = {k for k, _ in alg.named_parameters()}
        assert moved and not set(moved) & weights
        if cfg.algorithm.name == "adabn":  # BatchNorm statistics only
            assert all("running" in k or "num_batches" in k for k in moved)
        else:  # prior_em: always in eval mode, BatchNorm statistics kept; its own buffers move
            assert all("." not in k for k in moved)
        return
    losses["total"].backward()
    grads = [p.grad for p in alg.feature_extractor.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    logits = alg.predict(tgt)
    assert logits.shape == (6, data.num_classes)
