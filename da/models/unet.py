"""Segmentation networks for 2D rebar images: a U-Net on a staged ResNet or EfficientNet-Lite
encoder, and torchvision's DeepLabV3.

U-Net (`model.name=unet`): the encoder is the transfer issue's staged backbone
(`da.models.torchvision_nets`: same `arch` - resnet18 / resnet50 / efficientnet_lite0..2 -,
`weights` - imagenet, a .pth/.safetensors, one of our exported backbones or run folders -,
the same freezing strategies and `bn_momentum`). The encoder gives one map at each of
H/2, H/4, H/8, H/16 and H/32 (`encoder_pyramid`); the decoder starts from H/32 and
upsamples to H/16, H/8, H/4, H/2 and H in turn, each time concatenating that level's
encoder map, and at H a small full-resolution conv branch on the image (frozen stages
keep BatchNorm in eval: the staged encoder's own train()). The levels per family:
- ResNet: layer3, layer2, layer1 (H/4), the stem's conv1 before its max-pool (H/2);
- EfficientNet-Lite: stages 4 (112 ch, after the 80-ch group), 3, 2 and 1 (16 ch at
  H/2); its deepest map is stage 5 closed by the 1x1 head conv (1280 ch at H/32), the
  features the ImageNet classifier reads. TF SAME padding gives ceil(H / 2^k) sizes; the
  decoder resizes to each skip's own size, so odd inputs work for both families.
The two finest levels matter for rebar: a 3 px bar is under a pixel wide at H/4, so a
decoder that stops there and upsamples x4 bilinearly cannot draw a tie (the first
version did; ties scored IoU ~0). Features: (B, decoder_channels[-1], H, W) per pixel;
the head is a 1x1 conv.

After each forward the encoder's maps are kept in `stage_features` (widths in
`stage_channels`) for image-level domain classifiers (`algorithm.name=dann_stages`), indexed
alike for both families: entry k >= 1 is the encoder's output at H/2^(k+1) (ResNet
layer1..layer4, Lite stages 2..5), entry 0 the stem (ResNet, H/4 after the max-pool) or
Lite's stage 1 (H/2). So `algorithm.stages=[1,2,3,4]` means H/4..H/32 on either encoder.

The encoder's parameters are the ones `optim.feature_lr_mult` scales (`ModelParts.
slow_parameters`): a pretrained encoder fine-tuned slower than the decoder and head, which
start from random.

DeepLabV3 (`model.name=deeplabv3`): torchvision's deeplabv3_resnet50 without its last 1x1
classifier; its ASPP features (256 channels) are upsampled to the input size and a 1x1
conv head classifies them. `weights` may name a ResNet-50 state dict for its backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from da.config_schema import ModelConfig
from da.models import MODELS, ModelParts
from da.models.torchvision_nets import (
    LITE_ARCHS,
    TorchvisionConfig,
    build_backbone,
    input_normalisation,
    load_pretrained,
)
from da.registry import register

RESNETS = ("resnet18", "resnet50")
ENCODERS = (*RESNETS, *LITE_ARCHS)


@dataclass
class UNetConfig(ModelConfig):
    name: str = "unet"
    arch: str = "resnet18"  # resnet18 | resnet50 | efficientnet_lite0 | _lite1 | _lite2
    weights: str = ""
    strategy: str = "scratch"  # scratch | finetune_all | finetune_from | feature_extractor
    stage: int = 0
    # one width per upsampling step: to H/16, H/8, H/4, H/2, H
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    full_res_channels: int = 16  # the conv branch on the input image, concatenated at H
    bn_momentum: float = 0.0  # the encoder's BatchNorm momentum; 0 = the arch's own (Lite 0.01)

    def validate(self) -> None:
        if self.arch not in ENCODERS:
            raise ValueError(f"unet takes an encoder in {sorted(ENCODERS)}, got '{self.arch}'")
        if self.strategy == "features_from":
            raise ValueError("unet needs the whole encoder: features_from cuts it")
        if len(self.decoder_channels) != 5:
            raise ValueError("decoder_channels: 5 widths, one per upsampling step (H/16, H/8, H/4, H/2, H)")
        if self.full_res_channels < 1:
            raise ValueError("full_res_channels must be >= 1")

    def input_normalisation(self) -> str:
        return input_normalisation(self.arch)


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetEncoderDecoder(nn.Module):
    def __init__(self, encoder, decoder_channels: list[int], input_key: str, full_res_channels: int = 16):
        super().__init__()
        self.encoder, self.input_key = encoder, input_key
        self.resnet_stem = encoder.arch in RESNETS  # its stem ends in a max-pool: H/2 is inside it
        with torch.no_grad():
            was = encoder.training
            encoder.eval()
            pyramid = self.encoder_pyramid(torch.zeros(1, 3, 64, 64))
            encoder.train(was)
        self.stage_channels = [s.shape[1] for s in self.stage_features]
        self.full_res = nn.Sequential(conv_bn(3, full_res_channels), conv_bn(full_res_channels, full_res_channels))
        widths = [p.shape[1] for p in pyramid]  # H/2 .. H/32
        skips = [widths[3], widths[2], widths[1], widths[0], full_res_channels]  # what each step concatenates
        blocks, cin = [], widths[4]
        for skip, cout in zip(skips, decoder_channels):
            blocks.append(nn.Sequential(conv_bn(cin + skip, cout), conv_bn(cout, cout)))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.num_features = cin

    def _stage_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """(a ResNet stem's H/2 activation before its max-pool or None, every stage's output)."""
        enc, outs = self.encoder, []
        half = None
        for k, stage in enumerate(enc.stages):
            with torch.set_grad_enabled(torch.is_grad_enabled() and k >= enc.frozen):
                if k == 0 and self.resnet_stem:  # ResNet stem = conv1, bn1, relu, maxpool
                    half = stage[:-1](x)
                    x = stage[-1](half)
                else:
                    x = stage(x)
            outs.append(x)
        return half, outs

    def encoder_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's maps at H/2, H/4, H/8, H/16, H/32; sets `stage_features`."""
        half, outs = self._stage_outputs(x)
        if self.resnet_stem:  # [stem, layer1..layer4]
            self.stage_features = outs
            return [half, *outs[1:]]
        self.stage_features = outs[1:]  # Lite: [stage 1 (H/2), stages 2..5 (H/4..H/32)]; its stem is
        return outs[1:]  # at H/2 too and stage 1 refines it, so stage 1 is the H/2 skip

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch[self.input_key]
        half, h4, h8, h16, h32 = self.encoder_pyramid(x)
        y = h32
        for block, skip in zip(self.blocks, (h16, h8, h4, half, self.full_res(x))):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        return y


def pixel_head(cin: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, k, 1)


@register(MODELS, "unet", UNetConfig)
def build_unet(cfg: UNetConfig, data) -> ModelParts:
    cfg.validate()
    tv = TorchvisionConfig(arch=cfg.arch, weights=cfg.weights, strategy=cfg.strategy, stage=cfg.stage,
                           bn_momentum=cfg.bn_momentum)
    encoder, _ = build_backbone(tv, data.input_key)
    fe = UNetEncoderDecoder(encoder, list(cfg.decoder_channels), data.input_key, cfg.full_res_channels)
    return ModelParts(fe, pixel_head(fe.num_features, data.num_classes),
                      slow_parameters=list(encoder.parameters()))


@dataclass
class DeepLabConfig(ModelConfig):
    name: str = "deeplabv3"
    weights: str = ""  # a ResNet-50 state dict / export / run folder for the backbone

    def input_normalisation(self) -> str:
        return "imagenet"  # torchvision's ResNet-50 backbone


class DeepLabFeatures(nn.Module):
    def __init__(self, net, input_key: str):
        super().__init__()
        # DeepLabHead = ASPP, 3x3 conv, BN, ReLU, 1x1 classifier: all but the classifier
        self.backbone, self.input_key = net.backbone, input_key
        self.aspp = nn.Sequential(*list(net.classifier.children())[:-1])
        self.num_features = 256

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch[self.input_key]
        y = self.aspp(self.backbone(x)["out"])
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register(MODELS, "deeplabv3", DeepLabConfig)
def build_deeplab(cfg: DeepLabConfig, data) -> ModelParts:
    import torchvision

    net = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                             num_classes=data.num_classes, aux_loss=False)
    if cfg.weights:
        resnet = torchvision.models.resnet50(weights=None)
        load_pretrained("resnet50", resnet, cfg.weights)
        missing = net.backbone.load_state_dict({k: v for k, v in resnet.state_dict().items()
                                                if not k.startswith("fc.")}, strict=False)
        if missing.missing_keys:
            raise ValueError(f"{cfg.weights}: backbone keys missing {missing.missing_keys[:4]}")
    fe = DeepLabFeatures(net, data.input_key)
    return ModelParts(fe, pixel_head(fe.num_features, data.num_classes))
