"""The 2D U-Net on the EfficientNet-Lite0 ImageNet encoder (da/models/unet.py): skips at
every resolution for odd input sizes, the backbone's normalisation in the rebar2d crops,
the encoder as the slow parameter group, and the 2D algorithms end to end on it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from da.config import load_config
from da.models.unet import UNetConfig, build_unet

DATA = SimpleNamespace(input_key="image", num_classes=3, input_shape=(3, 64, 64))
LITE = ["model.name=unet", "model.arch=efficientnet_lite0", "model.weights=imagenet", "model.strategy=finetune_all"]


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "resnet18"])
@pytest.mark.parametrize("hw", [(67, 93), (33, 129), (64, 64)])
def test_skips_and_output_at_odd_input_sizes(arch, hw):
    fe = build_unet(UNetConfig(arch=arch), DATA).feature_extractor.eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        pyramid = fe.encoder_pyramid(x)
        out = fe({"image": x})
    assert out.shape == (2, fe.num_features, *hw)  # every pixel of the input gets a feature
    for k, level in enumerate(pyramid, start=1):  # H/2 .. H/32, rounded as each family rounds
        ceil = tuple(math.ceil(n / 2 ** k) for n in hw)  # TF SAME padding
        if arch.startswith("efficientnet"):
            assert tuple(level.shape[-2:]) == ceil
        else:  # torch's conv arithmetic: floor((n - 1) / 2) + 1 per stride-2 step, = ceil here
            assert tuple(level.shape[-2:]) == ceil
    # stage_features[k >= 1] is the map at H/2^(k+1) on either encoder (dann_stages' indices)
    for k in range(1, 5):
        assert tuple(fe.stage_features[k].shape[-2:]) == tuple(pyramid[k].shape[-2:])
    assert [s.shape[1] for s in fe.stage_features] == fe.stage_channels


def test_lite_encoder_widths_and_imagenet_weights_reach_the_unet():
    from da.models.efficientnet_lite import imagenet_classifier

    unet = build_unet(UNetConfig(arch="efficientnet_lite0", weights="imagenet", strategy="finetune_all"), DATA)
    fe = unet.feature_extractor
    assert fe.stage_channels == [16, 24, 40, 112, 1280]
    ref = imagenet_classifier("efficientnet_lite0")
    torch.testing.assert_close(fe.encoder.stages[0].conv.weight, ref.stem.conv.weight, rtol=0, atol=0)
    torch.testing.assert_close(fe.encoder.stages[-1][-1].conv.weight, ref.head.conv.weight, rtol=0, atol=0)
    assert {id(p) for p in unet.slow_parameters} == {id(p) for p in fe.encoder.parameters()}


def test_encoder_is_the_slow_group_and_decoder_learns_at_the_full_rate(tiny2d):
    from da.runs import build_run

    cfg = load_config(None, [*tiny2d, *LITE, "optim.lr=0.01", "optim.feature_lr_mult=0.1"])
    run = build_run(cfg, torch.device("cpu"))
    slow, fast = run.optimizer.param_groups
    enc = {id(p) for p in run.algorithm.feature_extractor.encoder.parameters()}
    assert {id(p) for p in slow["params"]} == enc and slow["lr"] == pytest.approx(0.001)
    decoder = {id(p) for p in run.algorithm.feature_extractor.blocks.parameters()}
    assert decoder <= {id(p) for p in fast["params"]} and fast["lr"] == pytest.approx(0.01)
    assert len(slow["params"]) + len(fast["params"]) == len(list(run.algorithm.parameters()))


def test_the_rebar2d_crops_use_the_lite_normalisation(tiny2d):
    from da.data import build_data

    lite = load_config(None, [*tiny2d, *LITE, "data.augment=false"])
    plain = load_config(None, [*tiny2d, "model.name=unet", "data.augment=false"])
    assert (lite.data.normalisation, plain.data.normalisation) == ("tf_lite", "imagenet")
    a = build_data(lite.data).source_val.__getitems__([(0, 0)])["image"]
    b = build_data(plain.data).source_val.__getitems__([(0, 0)])["image"]
    raw = a * 128 + 127  # undo (x - 127) / 128: the same crop's pixels, 0..255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(b, (raw / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1), rtol=0, atol=1e-4)
    assert a.min() >= -1 and a.max() <= 1 and raw.max() - raw.min() > 10  # not a constant crop


@pytest.mark.parametrize("algo", [
    ["algorithm.name=source_only"],
    ["algorithm.name=dann", "algorithm.domain_level=dense", "algorithm.domain_rows=256", "algorithm.disc_hidden=[32]"],
    ["algorithm.name=dann_stages", "algorithm.output_weight=0.5"],
    ["algorithm.name=adabn"]])
def test_tiny_end_to_end_on_the_imagenet_encoder(tmp_path, tiny2d, algo):
    from da.run_log import read_results
    from da.train import train

    over = [*tiny2d, *LITE, *algo, "optim.feature_lr_mult=0.1", "train.batch_size=2", "train.steps=2",
            "train.eval_every=2", "train.log_every=1", "train.checkpoint_every=2", "train.progress_bar=false",
            "train.embedding_samples=0", "optim.name=adamw", "optim.lr=0.001", f"run_dir={tmp_path / 'run'}"]
    run = train(load_config(None, over))
    final = read_results(run)[-1]
    assert final["step"] == 2 and 0 <= final["target_miou"] <= 1 and "target_iou_2" in final
    assert (run / "done").exists()


def test_stage_discriminators_reach_the_lite_encoder(tiny2d):
    from da.data import build_data
    from da.runs import build_run

    cfg = load_config(None, [*tiny2d, *LITE, "algorithm.name=dann_stages", "algorithm.stages=[1,4]",
                             "train.batch_size=2"])
    run = build_run(cfg, torch.device("cpu"))
    data = build_data(cfg.data)
    out = run.algorithm.losses(data.source_train.__getitems__([(0, 1), (1, 1)]),
                               data.target_train.__getitems__([(0, 2), (1, 2)]), progress=0.5)
    out["domain"].backward()
    stages = run.algorithm.feature_extractor.encoder.stages
    assert stages[2][0].depthwise.conv.weight.grad.abs().sum() > 0  # H/4 (stage 2) gets the reversed gradient
    assert stages[5][-1].conv.weight.grad.abs().sum() > 0  # and the 1x1 head conv at H/32
