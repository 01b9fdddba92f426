"""Image classifiers with one uniform shape, so training, DEXTER and evaluation never special-case an arch.

Every classifier takes images in [0, 1] (N x 3 x H x W, any size) and owns its own preprocessing:

- ``preprocess(x01)``: resize to the arch's input size and normalise with the arch's statistics;
- ``backbone(x)``: preprocessed images -> penultimate features (N x D);
- ``head``: an ``nn.Linear(D, num_classes)`` (DEXTER reads its weights to pick feature neurons;
  last-layer retraining replaces it);
- ``forward(x01) = head(backbone(preprocess(x01)))``.

Weights are stored as ``model.safetensors`` + ``config.json`` (never a pickled module), and a saved
classifier is rebuilt from its config without downloading anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserInputError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision archs we know how to cut into backbone + head (final layer attribute name).
_TORCHVISION_HEADS = {
    "resnet18": "fc", "resnet34": "fc", "resnet50": "fc", "resnet101": "fc", "resnet152": "fc",
    "wide_resnet50_2": "fc", "resnext50_32x4d": "fc",
}
# The ImageNet weights the group-DRO papers used (torchvision's original ``pretrained=True``).
_PAPER_WEIGHTS = "IMAGENET1K_V1"


class ModelError(UserInputError, RuntimeError):
    """A classifier cannot be built or loaded (unknown arch, missing weights, offline download)."""


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild a classifier's architecture (weights come from the safetensors file)."""

    arch: str
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_json(cls, d: dict) -> ClassifierConfig:
        return cls(arch=d["arch"], class_names=tuple(d["class_names"]), image_size=int(d["image_size"]),
                   mean=tuple(d["mean"]), std=tuple(d["std"]), extra=dict(d.get("extra", {})))


class Classifier(nn.Module):
    """backbone + linear head, fed with [0, 1] images."""

    def __init__(self, config: ClassifierConfig, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, config.num_classes)
        self.register_buffer("_mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """Resize to the arch's input size (bilinear, antialiased) and normalise."""
        if x01.ndim != 4 or x01.shape[1] != 3:
            raise ValueError(f"expected images N x 3 x H x W in [0,1], got shape {tuple(x01.shape)}")
        s = self.config.image_size
        if x01.shape[-2:] != (s, s):
            x01 = F.interpolate(x01, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x01 - self._mean) / self._std

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        """Penultimate features of [0, 1] images."""
        return self.backbone(self.preprocess(x01))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x01))


class SmallCNN(nn.Sequential):
    """Three conv blocks and global pooling: enough for the synthetic world, trains in seconds on a CPU."""

    def __init__(self, width: int = 32) -> None:
        super().__init__(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_dim = 2 * width


def build_classifier(
    arch: str,
    class_names: tuple[str, ...] | list[str],
    image_size: int,
    *,
    pretrained: bool = False,
    width: int = 32,
    hf_config: dict | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
) -> Classifier:
    """A fresh classifier. ``pretrained`` loads ImageNet weights into a torchvision backbone (needs them
    in the torch hub cache or network access; the error says which). ``torchvision:<name>`` is any
    torchvision classifier and ``huggingface`` a Hugging Face one (``hf_config``, ``mean``, ``std``): the
    architectures of imported classifiers (:mod:`dro.imported`)."""
    class_names = tuple(class_names)
    if len(class_names) < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {list(class_names)}")
    if arch == "small_cnn":
        if pretrained:
            raise ModelError("small_cnn has no pretrained weights; set pretrained: false")
        cfg = ClassifierConfig(arch, class_names, image_size, extra={"width": width})
        net = SmallCNN(width)
        return Classifier(cfg, net, net.out_dim)
    if arch in _TORCHVISION_HEADS:
        return _torchvision_classifier(arch, class_names, image_size, pretrained)
    if arch.startswith("torchvision:"):
        return _any_torchvision_classifier(arch, class_names, image_size, pretrained)
    if arch == "huggingface":
        return _huggingface_classifier(class_names, image_size, hf_config, mean, std)
    known = ["small_cnn", *_TORCHVISION_HEADS, "torchvision:<any torchvision classifier>"]
    raise ModelError(f"unknown arch {arch!r}; expected one of {known}")


def split_last_linear(model: nn.Module) -> nn.Linear:
    """Replace the model's LAST ``nn.Linear`` (its head) by Identity and return it: what is left maps an
    input to the head's input (penultimate features). Works for torchvision and Hugging Face classifiers
    whose head is their last linear layer (resnets' fc, ViT's heads.head, EfficientNet's classifier[-1])."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ModelError(f"{type(model).__name__} has no nn.Linear head to split off")
    parent = model
    *path, leaf = last.split(".")
    for part in path:
        parent = getattr(parent, part)
    head = getattr(parent, leaf)
    setattr(parent, leaf, nn.Identity())
    return head


def _any_torchvision_classifier(arch: str, class_names: tuple[str, ...], image_size: int,
                                pretrained: bool) -> Classifier:
    """Any torchvision classification model (``torchvision:<name>``), cut at its last linear layer."""
    import torchvision

    name = arch.split(":", 1)[1]
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ModelError(f"unknown torchvision classifier {name!r}")
    if pretrained:
        raise ModelError(f"{arch}: pretrained weights are read by the classifier import (dro.imported), "
                         "not when building the architecture")
    net = torchvision.models.get_model(name, weights=None)
    feature_dim = split_last_linear(net).in_features
    cfg = ClassifierConfig(arch, class_names, image_size, IMAGENET_MEAN, IMAGENET_STD)
    return Classifier(cfg, net, feature_dim)


class HFBackbone(nn.Module):
    """A Hugging Face image classifier whose head was split off: pixel values -> penultimate features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits.flatten(1)


def _huggingface_classifier(class_names: tuple[str, ...], image_size: int, hf_config: dict | None,
                            mean, std) -> Classifier:
    """A Hugging Face image-classification architecture rebuilt from its config dict (no download)."""
    if hf_config is None or mean is None or std is None:
        raise ModelError("arch huggingface needs the model's config and its normalisation (mean, std)")
    from transformers import AutoConfig, AutoModelForImageClassification

    config = AutoConfig.for_model(**hf_config)
    net = AutoModelForImageClassification.from_config(config)
    feature_dim = split_last_linear(net).in_features
    cfg = ClassifierConfig("huggingface", class_names, image_size, tuple(mean), tuple(std),
                           extra={"hf_config": hf_config})
    return Classifier(cfg, HFBackbone(net), feature_dim)


def _torchvision_classifier(arch: str, class_names: tuple[str, ...], image_size: int,
                            pretrained: bool) -> Classifier:
    import torchvision

    weights = None
    if pretrained:
        weights = torchvision.models.get_model_weights(arch)[_PAPER_WEIGHTS]
    try:
        net = torchvision.models.get_model(arch, weights=weights)
    except Exception as e:  # urllib/ssl/hash errors: the user only needs to know the weights are missing
        raise ModelError(
            f"could not load ImageNet weights {weights} for {arch} ({type(e).__name__}: {e}). Offline? "
            f"Put the file {weights.url.rsplit('/', 1)[-1] if weights else '?'} in "
            f"$TORCH_HOME/hub/checkpoints/ or set pretrained: false"
        ) from e
    head_name = _TORCHVISION_HEADS[arch]
    feature_dim = getattr(net, head_name).in_features
    setattr(net, head_name, nn.Identity())
    cfg = ClassifierConfig(arch, class_names, image_size, IMAGENET_MEAN, IMAGENET_STD)
    return Classifier(cfg, net, feature_dim)


def save_classifier(model: Classifier, out_dir: Path | str) -> None:
    """Write ``config.json`` + ``model.safetensors`` atomically."""
    from safetensors.torch import save

    from common.io import atomic_write_json, atomic_writer

    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_writer(out_dir / WEIGHTS_FILE, "wb") as f:
        f.write(save(state))
    atomic_write_json(out_dir / CONFIG_FILE, model.config.to_json())


def read_class_names(model_dir: Path | str) -> list[str]:
    """The class names of a classifier saved by :func:`save_classifier`, from its config alone (cheap)."""
    config = Path(model_dir) / CONFIG_FILE
    if not config.is_file():
        raise ModelError(f"no classifier at {model_dir} (run the train_erm stage first)")
    try:
        names = json.loads(config.read_text())["class_names"]
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"{config}: no class_names list") from None
    return [str(n) for n in names]


def load_classifier(model_dir: Path | str, device: torch.device | str = "cpu") -> Classifier:
    """Rebuild a classifier saved by :func:`save_classifier` (no download: weights come from the file)."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).exists() or not (model_dir / WEIGHTS_FILE).exists():
        raise ModelError(f"no classifier at {model_dir} (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    cfg = ClassifierConfig.from_json(json.loads((model_dir / CONFIG_FILE).read_text()))
    extra = {"width": cfg.extra["width"]} if "width" in cfg.extra else {}
    if cfg.arch == "huggingface":
        extra = {"hf_config": cfg.extra.get("hf_config"), "mean": cfg.mean, "std": cfg.std}
    model = build_classifier(cfg.arch, cfg.class_names, cfg.image_size, pretrained=False, **extra)
    if model.config.mean != cfg.mean or model.config.std != cfg.std:
        raise ModelError(f"{model_dir}: normalisation in config.json differs from the arch's")
    missing, unexpected = model.load_state_dict(load_file(model_dir / WEIGHTS_FILE), strict=False)
    if missing or unexpected:
        raise ModelError(f"{model_dir}: weights do not fit {cfg.arch} (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return model.to(device).eval()
