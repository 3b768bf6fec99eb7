"""torchvision backbones and transfer strategies: freezing, weights files, clear errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from da.models import build_model
from da.models.torchvision_nets import (
    ARCHS,
    TorchvisionConfig,
    export_backbone,
    imagenet_file,
    stages_of,
    torchvision_model,
)

DATA = SimpleNamespace(input_shape=(3, 32, 32), num_classes=4, input_key="image")


def _parts(**kw):
    cfg = TorchvisionConfig(**kw)
    return build_model(cfg, DATA), cfg


def _weights(tmp_path, arch="resnet18"):
    torch.manual_seed(1)
    net = torchvision_model(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    return path, net


def _step(parts, steps=2):
    params = [p for m in (parts.feature_extractor, parts.task_head) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    for _ in range(steps):
        parts.feature_extractor.train()
        x = torch.randn(4, 3, 32, 32) * 3 + 1
        loss = torch.nn.functional.cross_entropy(parts.task_head(parts.feature_extractor({"image": x})),
                                                 torch.arange(4))
        opt.zero_grad()
        loss.backward()
        opt.step()


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("strategy,stage", [("feature_extractor", 0), ("features_from", 2),
                                            ("finetune_from", 3), ("finetune_all", 0)])
def test_frozen_stages_stay_frozen_and_the_rest_learns(tmp_path, strategy, stage):
    path, _ = _weights(tmp_path)
    parts, _ = _parts(weights=str(path), strategy=strategy, stage=stage)
    fe = parts.feature_extractor
    before = [_snapshot(s) for s in fe.stages]
    head_before = _snapshot(parts.task_head)
    _step(parts)
    frozen = {"feature_extractor": 5, "features_from": 3, "finetune_from": 3, "finetune_all": 0}[strategy]
    assert fe.frozen == frozen
    for i, (s, b) in enumerate(zip(fe.stages, before)):
        after = s.state_dict()
        same = all(torch.equal(after[k], b[k]) for k in b)  # weights AND BatchNorm statistics
        if i < frozen:
            assert same, f"stage {i} changed though frozen"
            assert all(not p.requires_grad and p.grad is None for p in s.parameters())
            assert all(not m.training for m in s.modules())  # BatchNorm in eval after train()
        else:
            assert not same, f"stage {i} did not learn"
    assert any(not torch.equal(v, head_before[k]) for k, v in parts.task_head.state_dict().items())
    if strategy == "features_from":  # cut after stage 2: 128 channels on resnet18
        assert len(fe.stages) == 3 and fe.num_features == 128


def test_weights_from_file_safetensors_and_export(tmp_path):
    path, net = _weights(tmp_path)
    parts, _ = _parts(weights=str(path), strategy="finetune_all")
    ref = stages_of("resnet18", net)
    for mine, theirs in zip(parts.feature_extractor.stages, ref):
        for (k, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items()):
            assert torch.equal(a, b), k
    from safetensors.torch import save_file

    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    p2, _ = _parts(weights=str(st), strategy="feature_extractor")
    assert torch.equal(p2.feature_extractor.stages[0][0].weight, net.conv1.weight)
    # our own export round-trips through model.weights
    _step(parts)
    out = export_backbone(SimpleNamespace(feature_extractor=parts.feature_extractor),
                          TorchvisionConfig(weights=str(path)), tmp_path / "exported.pth")
    p3, _ = _parts(weights=str(out), strategy="finetune_all")
    assert torch.equal(p3.feature_extractor.stages[4][0].conv1.weight,
                       parts.feature_extractor.stages[4][0].conv1.weight)
    with pytest.raises(ValueError, match="resnet18 backbone, not resnet50"):
        _parts(arch="resnet50", weights=str(out), strategy="finetune_all")


def test_bad_weights_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_cache"))
    with pytest.raises(FileNotFoundError, match="local torch cache.*export-backbone"):
        _parts(weights="imagenet", strategy="feature_extractor")
    assert str(tmp_path / "empty_cache") in str(imagenet_file("resnet18"))
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a readable state dict"):
        _parts(weights=str(bad), strategy="feature_extractor")
    path, _ = _weights(tmp_path, "mobilenet_v3_small")
    with pytest.raises(ValueError, match="does not fit resnet18"):
        _parts(weights=str(path), strategy="feature_extractor")
    with pytest.raises(ValueError, match="needs pretrained weights"):
        _parts(strategy="feature_extractor")
    with pytest.raises(ValueError, match="stage >= 1"):
        _parts(weights=str(path), strategy="finetune_from")
    with pytest.raises(ValueError, match="stages 1..4"):
        _parts(weights=str(_weights(tmp_path)[0]), strategy="finetune_from", stage=5)


def test_imagenet_weights_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache"))
    target = imagenet_file("mobilenet_v3_small")
    target.parent.mkdir(parents=True)
    torch.manual_seed(3)
    net = torchvision_model("mobilenet_v3_small")
    torch.save(net.state_dict(), target)  # stands in for the downloaded file
    parts, _ = _parts(arch="mobilenet_v3_small", weights="imagenet", strategy="feature_extractor")
    assert torch.equal(parts.feature_extractor.stages[0][0][0].weight, net.features[0][0].weight)
    assert parts.feature_extractor.num_features == 576


def test_every_arch_builds_and_runs():
    for arch in ARCHS:
        parts, _ = _parts(arch=arch, strategy="scratch")
        out = parts.task_head(parts.feature_extractor({"image": torch.randn(2, 3, 32, 32)}))
        assert out.shape == (2, 4)


def test_trainer_keeps_frozen_stages_through_resume_and_exports(tmp_path):
    from da import checkpoint
    from da.cli import main
    from da.config import load_config
    from da.train import Trainer, train
    from tests.test_images import write_folder

    folder = write_folder(tmp_path / "imgs", size=(36, 36))
    base = ["data.name=image_folder", f"data.path={folder}", "data.image_size=32", "data.augment=true",
            "model.name=torchvision", "train.batch_size=6", "train.log_every=2", "train.eval_every=3",
            "train.checkpoint_every=2", "train.progress_bar=false", "train.embedding_samples=0",
            "optim.name=adamw", "optim.lr=0.001"]
    pre = train(load_config(None, [*base, "model.strategy=scratch", "train.steps=3", f"run_dir={tmp_path / 'pre'}"]))
    assert main(["export-backbone", str(pre), "--out", str(tmp_path / "bb.pth")]) == 0
    exported = torch.load(tmp_path / "bb.pth", weights_only=True)["state_dict"]
    ft = load_config(None, [*base, f"model.weights={tmp_path / 'bb.pth'}", "model.strategy=finetune_from",
                            "model.stage=3", "optim.feature_lr_mult=0.1", "train.steps=5",
                            f"run_dir={tmp_path / 'ft'}"])
    Trainer(ft).fit(stop_after=3)  # killed after 3 steps; resumes from step 2
    run_dir = train(ft)
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")["model"]
    # stem + layer1 + layer2 frozen: weights and BatchNorm statistics exactly the exported ones
    assert torch.equal(state["feature_extractor.stages.0.1.running_mean"], exported["bn1.running_mean"])
    assert torch.equal(state["feature_extractor.stages.2.0.bn1.running_var"], exported["layer2.0.bn1.running_var"])
    assert torch.equal(state["feature_extractor.stages.1.0.conv1.weight"], exported["layer1.0.conv1.weight"])
    # layer3 on trained
    assert not torch.equal(state["feature_extractor.stages.3.0.conv1.weight"], exported["layer3.0.conv1.weight"])
    assert not torch.equal(state["feature_extractor.stages.3.0.bn1.running_mean"], exported["layer3.0.bn1.running_mean"])
    assert (run_dir / "done").exists()
    # the run folder itself as weights: the same backbone as the exported file
    from types import SimpleNamespace as NS

    from da.models import build_model as build

    direct = build(TorchvisionConfig(weights=str(pre), strategy="finetune_all"),
                   NS(input_shape=(3, 32, 32), num_classes=3, input_key="image"))
    assert torch.equal(direct.feature_extractor.stages[3][0].conv1.weight, exported["layer3.0.conv1.weight"])


def test_fully_frozen_backbone_computes_each_image_once(tmp_path):
    path, _ = _weights(tmp_path)
    parts, _ = _parts(weights=str(path), strategy="feature_extractor")
    fe = parts.feature_extractor
    calls = []
    fe.stages[0].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x = torch.randn(5, 3, 32, 32)
    first = fe({"image": x})
    again = fe({"image": x[[4, 0, 2]]})  # seen images, another order
    assert calls == [5]  # the network ran once, for the first call only
    torch.testing.assert_close(again, first[[4, 0, 2]])
    mixed = fe({"image": torch.cat([x[:2], torch.randn(2, 3, 32, 32)])})
    assert calls == [5, 2] and torch.equal(mixed[:2], first[:2])
    fe.load_state_dict(fe.state_dict())  # new weights: nothing stale is served
    fe({"image": x})
    assert calls == [5, 2, 5]
    ft, _ = _parts(weights=str(path), strategy="finetune_all")  # trainable: never cached
    n = []
    ft.feature_extractor.stages[0].register_forward_hook(lambda m, i, o: n.append(1))
    ft.feature_extractor({"image": x})
    ft.feature_extractor({"image": x})
    assert len(n) == 2


@pytest.mark.parametrize("arch,strategy,stage", [
    ("resnet18", "scratch", 0), ("resnet18", "feature_extractor", 0), ("resnet18", "features_from", 2),
    ("resnet18", "finetune_from", 3), ("resnet18", "finetune_all", 0), ("resnet50", "finetune_from", 4),
    ("mobilenet_v3_small", "features_from", 2)])
def test_every_strategy_trains_end_to_end_through_the_trainer(tmp_path, arch, strategy, stage):
    from da.config import load_config
    from da.run_log import read_results
    from da.train import train
    from tests.test_images import write_folder

    folder = write_folder(tmp_path / "imgs", size=(36, 36))
    weights = [] if strategy == "scratch" else [f"model.weights={_weights(tmp_path, arch)[0]}"]
    over = ["data.name=image_folder", f"data.path={folder}", "data.image_size=32", "model.name=torchvision",
            f"model.arch={arch}", f"model.strategy={strategy}", f"model.stage={stage}", "train.batch_size=6",
            "train.steps=3", "train.eval_every=3", "train.log_every=3", "train.checkpoint_every=3",
            "train.progress_bar=false", "train.embedding_samples=0", "optim.name=adamw", *weights,
            f"run_dir={tmp_path / 'run'}"]
    run_dir = train(load_config(None, over))
    final = read_results(run_dir)[-1]
    assert final["step"] == 3 and 0.0 <= final["target_acc"] <= 1.0 and (run_dir / "done").exists()
