"""Image classifiers with one uniform shape, so training, DEXTER and evaluation never special-case an arch.

Every classifier takes images in [0, 1] (N x 3 x H x W, any size) and owns its own preprocessing:

- ``preprocess(x01)``: resize to the arch's input size and normalise with the arch's statistics
  (:func:`resize_and_normalise`, the project's ONE preprocessing implementation: DEXTER's input settings
  for classifiers loaded by name are modes of it, :class:`Preprocess`);
- ``backbone(x)``: preprocessed images -> penultimate features (N x D);
- ``head``: an ``nn.Linear(D, num_classes)`` (DEXTER reads its weights to pick feature neurons;
  last-layer retraining replaces it);
- ``forward(x01) = head(backbone(preprocess(x01)))``.

Weights are stored as ``model.safetensors`` + ``config.json`` (never a pickled module), and a saved
classifier is rebuilt from its config without downloading anything.

Where a classifier's input is decided: ``config.json`` holds ``image_size`` (the dataset section's
``image_size`` at training time: 32 px for the synthetic world's ``small_cnn``), ``mean``/``std`` (the arch's:
0.5/0.5 for ``small_cnn``, ImageNet statistics for torchvision archs) and :meth:`Classifier.preprocess`
applies them to every batch it is given, in training (:mod:`dro.train` feeds [0, 1] images to ``forward``)
and in DEXTER (which wraps that very method), so a generated image is resized and normalised exactly as the
training images were.

Torchvision networks with their weights (a checkpoint's state dict, named ImageNet weights, or random)
come from :func:`torchvision_network`, shared by the architectures below, the bring-your-own-classifier
import (``dro.imported``) and DEXTER's classifiers by name (``dexter.classifiers``).
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
    """A classifier cannot be built, loaded or used as asked (unknown arch, missing weights, offline download,
    a class index it does not have). Unreadable checkpoints raise its subclass
    :class:`common.checkpoints.CheckpointError`."""


RESIZE_MODES = ("square", "short_side", "short_side_crop")


def resize_and_normalise(x01: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor, *,
                         mode: str = "square", resize_to: int | None = None) -> torch.Tensor:
    """[0, 1] images (N x 3 x H x W) -> a classifier's input; differentiable (gradients reach the image).

    ``mode``:
    - ``square``: the whole image resized to ``size`` x ``size`` (bilinear, antialiased): the pipeline's
      classifiers, trained on ``size`` squares;
    - ``short_side``: the shorter side resized to ``size`` (the longer one truncated as torchvision does),
      aspect kept, nothing cropped, bilinear WITHOUT antialiasing (torchvision's ``Resize`` on tensors with
      ``antialias=None``): the original DEXTER code's input for its ImageNet classifiers;
    - ``short_side_crop``: the shorter side resized to ``resize_to`` (antialiased), then a centre crop of
      ``size``: the recipe torchvision's weights ship with.
    Then ``(x - mean) / std`` (``mean``/``std`` broadcastable, N x 3 x 1 x 1)."""
    if x01.ndim != 4 or x01.shape[1] != 3:
        raise ValueError(f"expected images N x 3 x H x W in [0,1], got shape {tuple(x01.shape)}")
    h, w = x01.shape[-2:]
    if mode == "square":
        if (h, w) != (size, size):
            x01 = F.interpolate(x01, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    elif mode == "short_side":
        if min(h, w) != size:
            short, long = (h, w) if h <= w else (w, h)
            new_long = int(size * long / short)  # torchvision's rounding (truncation)
            shape = (size, new_long) if h <= w else (new_long, size)
            x01 = F.interpolate(x01, size=shape, mode="bilinear", align_corners=False, antialias=False)
    elif mode == "short_side_crop":
        side = resize_to or size
        if min(h, w) != side:
            scale = side / min(h, w)
            x01 = F.interpolate(x01, size=(round(h * scale), round(w * scale)), mode="bilinear",
                                align_corners=False, antialias=True)
        h, w = x01.shape[-2:]
        top, left = (h - size) // 2, (w - size) // 2
        x01 = x01[..., top:top + size, left:left + size]
    else:
        raise ModelError(f"preprocessing mode must be one of {list(RESIZE_MODES)}, got {mode!r}")
    return (x01 - mean) / std


class Preprocess(nn.Module):
    """:func:`resize_and_normalise` as a module, with its statistics as buffers (moved by ``.to()``, cast to
    the input's dtype): the input of a network that is not a :class:`Classifier` (DEXTER's classifiers by
    name, whose setting is one of the modes)."""

    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, mode: str = "square",
                 resize_to: int | None = None) -> None:
        super().__init__()
        if mode not in RESIZE_MODES:
            raise ModelError(f"preprocessing mode must be one of {list(RESIZE_MODES)}, got {mode!r}")
        self.size, self.mode, self.resize_to = size, mode, resize_to
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_and_normalise(x, self.size, self.mean.to(x.dtype), self.std.to(x.dtype), mode=self.mode,
                                    resize_to=self.resize_to)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode}, resize_to={self.resize_to}"


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
        """Resize the whole image to the arch's input size (bilinear, antialiased) and normalise: the input
        the classifier was trained with (mode ``square`` of :func:`resize_and_normalise`)."""
        return resize_and_normalise(x01, self.config.image_size, self._mean, self._std, mode="square")

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
    net = torchvision_network(name)
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

    weights = torchvision.models.get_model_weights(arch)[_PAPER_WEIGHTS] if pretrained else None
    net = torchvision_network(arch, weights=weights, otherwise="set pretrained: false")
    head_name = _TORCHVISION_HEADS[arch]
    feature_dim = getattr(net, head_name).in_features
    setattr(net, head_name, nn.Identity())
    cfg = ClassifierConfig(arch, class_names, image_size, IMAGENET_MEAN, IMAGENET_STD)
    return Classifier(cfg, net, feature_dim)


def head_outputs(state: dict[str, torch.Tensor], what: str) -> int:
    """The number of classes of a state dict: the rows of its last 2-D (linear) weight."""
    linear = [k for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not linear:
        raise ModelError(f"{what}: no linear layer weight to read the number of classes from")
    return int(state[linear[-1]].shape[0])


def torchvision_network(name: str, *, state: dict[str, torch.Tensor] | None = None, what: str = "checkpoint",
                        weights=None, otherwise: str = "pass a checkpoint", num_classes: int | None = None) -> nn.Module:
    """A torchvision classification network (whole, head included) with the weights of ``state`` (a state dict,
    e.g. from :func:`common.checkpoints.read_state_dict`; its number of classes read from its head), the named
    ``weights`` (a torchvision weights enum, from the torch hub cache or downloaded), or random ones
    (``num_classes`` outputs, torchvision's default when None). ``what`` names the state's source and
    ``otherwise`` the user's alternative in the errors. Raises :class:`ModelError`."""
    import torchvision

    if state is not None:
        net = torchvision.models.get_model(name, weights=None, num_classes=head_outputs(state, what))
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"{what} does not fit torchvision {name}: missing {list(missing)[:5]}, "
                             f"unexpected {list(unexpected)[:5]}")
        return net
    if weights is not None:
        try:
            return torchvision.models.get_model(name, weights=weights)
        except Exception as e:  # noqa: BLE001 - urllib/ssl/hash errors: the user needs to know the file is missing
            raise ModelError(
                f"ImageNet weights for {name!r} cannot be fetched ({weights}; {type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}); put {weights.url.rsplit('/', 1)[-1]} in "
                f"{torch.hub.get_dir()}/checkpoints or {otherwise}"
            ) from None
    return torchvision.models.get_model(name, weights=None, **({} if num_classes is None else
                                                               {"num_classes": num_classes}))


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
