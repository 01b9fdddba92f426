"""Classifiers as DEXTER sees them: [0,1] images -> (logits, penultimate features), plus the final linear layer.

Every supported classifier becomes a :class:`FeatureHeadClassifier`, DEXTER's view of the project's one
classifier contract (:mod:`common.classifier`: [0, 1] images, the classifier's own preprocessing, a
feature extractor and a linear head) and the documented adapter for ANY model::

    FeatureHeadClassifier(features=f, head=nn.Linear(F, C), preprocess=p, class_names=[...])

with ``features(preprocess(x01))`` -> (N, F) penultimate activations and ``head(features)`` -> logits. The
head's weight is what selects feature neurons without data (docs/METHOD.md 1.3): the k units with the largest
weight to class c. Preprocessing must be differentiable (tensor resize + normalise): gradients flow
through it into the generated image. This module holds no loading or preprocessing code of its own:
checkpoints are read by :mod:`common.checkpoints`, torchvision networks and their weights come from
:func:`common.classifier.torchvision_network`, heads are split by :func:`common.classifier.split_last_linear`,
and every resize/normalise is :func:`common.classifier.resize_and_normalise` (:class:`Normalize` and
:class:`ResizeNormalize` name two of its modes). Errors are :class:`common.classifier.ModelError`
(``ClassifierError`` is its name here).

Sources: a torchvision architecture by name (ImageNet weights when they can be fetched, class names from
the weights' metadata), a checkpoint for a torchvision architecture, the robust ResNet-50 checkpoint of
the Salient-ImageNet work (``{"model": {"module.model.conv1.weight": ...}}``), a classifier trained or
imported by the pipeline, or the adapter directly.

Classifier input, and where it is decided. A classifier of the pipeline (``--classifier-dir``, the explain
and reason stages) brings its own: :func:`wrap_pipeline_classifier` uses its ``preprocess`` method, the one
it was trained with (its ``config.json``: ``image_size``, e.g. 32 px for the synthetic world's ``small_cnn``,
and the arch's mean/std, ImageNet statistics for torchvision archs; see :mod:`common.classifier`). For a
classifier by name the setting is chosen here, by :func:`resolve_preprocess`: for the classifiers the
original DEXTER code supports (``robust50``, ``resnet50``, ``vit_b_16``) the default is that code's setting,
the one the paper's numbers come from (``preprocess="original"``): torchvision's IMAGENET1K_V1 weights and
``Resize(256)`` of the WHOLE generated image (``Resize(224)`` for ViT-B/16, whose position embeddings fix a
224 px input), bilinear without antialiasing (torchvision's ``antialias=None`` on tensors), no centre crop.
``preprocess="torchvision"`` uses the weights' own recipe instead (DEFAULT weights, e.g. ResNet-50
IMAGENET1K_V2, resize 232 + centre crop 224), which is also what every other torchvision model gets.
``clf.info`` says which one ran; it is written to each run's config.json and keywords.json.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.checkpoints import CheckpointError, check_torchvision_name, read_state_dict
from common.classifier import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelError,
    Preprocess,
    head_outputs,
    load_classifier,
    split_last_linear,
    torchvision_network,
)

# The original code's input side per classifier (Resize(side) of the whole image); its weights are V1.
ORIGINAL_INPUT_SIDE = {"robust50": 256, "resnet50": 256, "vit_b_16": 224}
PREPROCESS = ("auto", "original", "torchvision")
ROBUST50_DEFAULT_CHECKPOINT = Path("checkpoints/robust_resnet50.pth")  # where the original code reads it

# The classifier cannot be built, read or used as asked (unknown name, unreadable checkpoint, weights
# unreachable, a class it does not have): the common error, under the name DEXTER's callers know. Unreadable
# checkpoints and unknown torchvision names raise its subclass CheckpointError.
ClassifierError = ModelError


class FeatureHeadClassifier(nn.Module):
    """``forward(x01) -> (logits, features)``; ``head`` is the final ``nn.Linear`` (C x F weight)."""

    def __init__(self, features: Callable[[torch.Tensor], torch.Tensor], head: nn.Linear,
                 preprocess: Callable[[torch.Tensor], torch.Tensor], class_names: Sequence[str],
                 info: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not isinstance(head, nn.Linear):
            raise ClassifierError(f"head must be an nn.Linear, got {type(head).__name__}")
        if len(class_names) != head.out_features:
            raise ClassifierError(f"{len(class_names)} class names for a head with {head.out_features} outputs")
        self.features = features
        self.head = head
        self.preprocess = preprocess
        owner = getattr(preprocess, "__self__", None)
        if isinstance(owner, nn.Module) and owner is not self:
            # preprocess is a method of a module (the pipeline's classifiers: their mean/std buffers live on the
            # model): register that module so that .to(device) moves what preprocess reads.
            self.preprocess_owner = owner
        self.class_names = list(class_names)
        self.info = dict(info or {})  # where the weights and the input setting came from (for the outputs)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def head_weight(self) -> torch.Tensor:
        return self.head.weight

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(self.preprocess(x01))
        if feats.dim() != 2:
            feats = feats.flatten(1)
        return self.head(feats), feats


def top_feature_neurons(head_weight: torch.Tensor, class_index: int, k: int) -> list[int]:
    """The k penultimate units with the largest weight to ``class_index`` (data-free selection)."""
    if not 0 <= class_index < head_weight.shape[0]:
        raise ClassifierError(f"class index {class_index} out of range [0, {head_weight.shape[0]})")
    k = min(k, head_weight.shape[1])
    return [int(i) for i in torch.topk(head_weight[class_index].detach().float(), k).indices]


class Normalize(Preprocess):
    """torchvision's recipe: resize of the shorter side to ``resize`` (bilinear, antialiased), centre crop of
    ``size``, mean/std normalisation (mode ``short_side_crop`` of :func:`common.classifier.resize_and_normalise`)."""

    def __init__(self, size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 resize: int | None = None) -> None:
        super().__init__(size, mean, std, mode="short_side_crop", resize_to=resize or size)
        self.resize = self.resize_to


class ResizeNormalize(Preprocess):
    """The original code's input: ``Resize(side)`` of the whole image (shorter side, aspect kept, NO crop),
    bilinear without antialiasing, then mean/std normalisation (mode ``short_side`` of
    :func:`common.classifier.resize_and_normalise`)."""

    def __init__(self, side: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__(side, mean, std, mode="short_side")
        self.side = side

    def extra_repr(self) -> str:
        return f"side={self.side}, crop=None, antialias=False"


def resolve_preprocess(name: str, preprocess: str = "auto") -> str:
    """'auto' -> 'original' for the original code's classifiers, else 'torchvision'. Raises for bad values."""
    if preprocess not in PREPROCESS:
        raise ClassifierError(f"preprocess must be one of {list(PREPROCESS)}, got {preprocess!r}")
    if preprocess == "auto":
        return "original" if name in ORIGINAL_INPUT_SIDE else "torchvision"
    if preprocess == "original" and name not in ORIGINAL_INPUT_SIDE:
        raise ClassifierError(f"preprocess 'original' is the original code's setting for "
                              f"{sorted(ORIGINAL_INPUT_SIDE)} only; use 'torchvision' for {name!r}")
    return preprocess


def _torchvision_transform_sizes(weights) -> tuple[int, int]:
    if weights is None:
        return 224, 256
    t = weights.transforms()
    crop = t.crop_size[0] if isinstance(t.crop_size, list | tuple) else t.crop_size
    resize = t.resize_size[0] if isinstance(t.resize_size, list | tuple) else t.resize_size
    return int(crop), int(resize)


def _default_weights(name: str):
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):
        return None


def load_torchvision(name: str, checkpoint: str | Path | None = None, class_names: Sequence[str] | None = None,
                     pretrained: bool = True, preprocess: str = "auto",
                     trust_checkpoint: bool = False) -> FeatureHeadClassifier:
    """A torchvision classification model by name, with ImageNet weights or the weights of ``checkpoint``.

    ``checkpoint``: a state dict (``.pt``/``.pth`` read with ``weights_only=True``, or ``.safetensors``), bare or
    under ``state_dict``/``model``, with or without ``module.`` / ``module.model.`` / ``model.`` prefixes (the
    robust ResNet-50 format). The number of classes is read from the checkpoint's head. ``preprocess``:
    see the module docstring ('auto' = the original code's setting where it has one).
    ``trust_checkpoint`` allows ``weights_only=False`` (arbitrary pickled code: only for a file you trust).
    """
    check_torchvision_name(name)
    setting = resolve_preprocess(name, preprocess)
    default = _default_weights(name)
    weights = _original_weights(name) if setting == "original" else default
    info: dict[str, Any] = {"name": name, "preprocess": setting}
    if checkpoint is not None:
        state = read_state_dict(checkpoint, trust=trust_checkpoint)
        head_key = head_outputs(state, f"checkpoint {checkpoint}")
        model = torchvision_network(name, state=state, what=f"checkpoint {checkpoint}")
        names = class_names
        if names is None and weights is not None and len(weights.meta.get("categories", [])) == head_key:
            names = weights.meta["categories"]
        names = names or [f"class{i}" for i in range(head_key)]
        info["weights"] = f"checkpoint {checkpoint}"
    elif pretrained:
        if weights is None:
            raise ClassifierError(f"torchvision has no pretrained weights for {name!r}; pass a checkpoint")
        model = torchvision_network(name, weights=weights, otherwise="pass --checkpoint")
        names = class_names or weights.meta["categories"]
        info["weights"] = str(weights)
    else:
        model = torchvision_network(name)
        names = class_names or (weights.meta["categories"] if weights else None)
        names = names or [f"class{i}" for i in range(1000)]
        info["weights"] = "random"
    if setting == "original":
        transform: nn.Module = ResizeNormalize(ORIGINAL_INPUT_SIDE[name])
        info["input"] = f"Resize({ORIGINAL_INPUT_SIDE[name]}) of the whole image, no crop"
    else:
        crop, resize = _torchvision_transform_sizes(default)
        transform = Normalize(crop, resize=resize)
        info["input"] = f"resize {resize}, centre crop {crop}"
    head = split_last_linear(model)
    return FeatureHeadClassifier(model, head, transform, names, info=info).eval()


def _original_weights(name: str):
    """IMAGENET1K_V1, the weights the original code loads."""
    from torchvision.models import get_model_weights

    return get_model_weights(name)["IMAGENET1K_V1"]


def load_robust_resnet50(path: str | Path = ROBUST50_DEFAULT_CHECKPOINT, class_names: Sequence[str] | None = None,
                         preprocess: str = "auto", trust_checkpoint: bool = False) -> FeatureHeadClassifier:
    """The robust ResNet-50 of the Salient-ImageNet work (a ``model`` dict with ``module.model.`` keys)."""
    if preprocess == "auto":
        preprocess = "original"
    clf = load_torchvision("resnet50", checkpoint=path, class_names=class_names, preprocess=preprocess,
                           trust_checkpoint=trust_checkpoint)
    clf.info["name"] = "robust50"
    return clf


def wrap_pipeline_classifier(model: nn.Module) -> FeatureHeadClassifier:
    """Adapt a classifier with ``preprocess`` / ``backbone`` / ``head`` / ``class_names`` (the pipeline's own)."""
    for attr in ("preprocess", "backbone", "head", "class_names"):
        if not hasattr(model, attr):
            raise ClassifierError(f"{type(model).__name__} has no .{attr}; wrap it with FeatureHeadClassifier")
    return FeatureHeadClassifier(model.backbone, model.head, model.preprocess, model.class_names,
                                 info={"preprocess": "the classifier's own"}).eval()


def as_feature_head_classifier(model: nn.Module, transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
                               class_names: Sequence[str] | None = None) -> FeatureHeadClassifier:
    """Any classifier + the transforms that feed it -> a :class:`FeatureHeadClassifier` (the original code's pair).

    A :class:`FeatureHeadClassifier` keeps its features and head; ``transforms`` becomes its preprocessing
    (it must not have one already: the input would be transformed twice). A model with the pipeline's
    interface (``preprocess``/``backbone``/``head``) is wrapped with its own preprocessing. Any other
    ``nn.Module`` is copied and split at its last ``nn.Linear`` (features = that layer's input).
    ``transforms=None`` feeds the generated [0, 1] image as it is.
    """
    import copy

    if isinstance(model, FeatureHeadClassifier):
        has_own = not isinstance(model.preprocess, nn.Identity)
        if transforms is not None and has_own:
            raise ClassifierError("this classifier already preprocesses its input; pass transforms=None, or "
                                  "give the transforms to a classifier without preprocessing")
        preprocess = transforms if transforms is not None else model.preprocess
        return FeatureHeadClassifier(model.features, model.head, preprocess, class_names or model.class_names,
                                     info=model.info).eval()
    if all(hasattr(model, a) for a in ("preprocess", "backbone", "head", "class_names")):
        if transforms is not None:
            raise ClassifierError(f"{type(model).__name__} has its own preprocess; pass transforms=None")
        return wrap_pipeline_classifier(model)
    features = copy.deepcopy(model)
    head = split_last_linear(features)
    if class_names is None and head.out_features == 1000:
        class_names = _original_weights("resnet50").meta["categories"]  # ImageNet
    names = class_names or [f"class{i}" for i in range(head.out_features)]
    return FeatureHeadClassifier(features, head, transforms if transforms is not None else nn.Identity(), names,
                                 info={"preprocess": "the transforms given" if transforms is not None else "none"}
                                 ).eval()


def build_classifier_and_transforms(clf: str, device: str | torch.device = "cpu", use_tfms: bool = True, *,
                                    checkpoint: str | Path | None = None, preprocess: str = "auto",
                                    trust_checkpoint: bool = False,
                                    class_names: Sequence[str] | None = None):
    """The original code's entry point: ``(classifier, transforms)`` for a classifier name.

    ``clf``: ``robust50`` (reads ``checkpoint``, default ``checkpoints/robust_resnet50.pth`` as the original
    does), a torchvision name (``resnet50``, ``vit_b_16``, ...), or a folder holding a classifier trained by
    this pipeline. The classifier comes back WITHOUT preprocessing and ``transforms`` is its input setting
    (None when ``use_tfms`` is False, as in the original): hand both to ``DEXTER.analyze_classifier`` or
    ``dexter.metrics.activation_score.activation_score``. The classifier stays fp32 (the original casts
    it to fp16; DEXTER's gradients flow through it).
    """
    if Path(str(clf)).is_dir():
        full = wrap_pipeline_classifier(load_classifier(clf))
    elif clf == "robust50":
        full = load_robust_resnet50(checkpoint or ROBUST50_DEFAULT_CHECKPOINT, class_names=class_names,
                                    preprocess=preprocess, trust_checkpoint=trust_checkpoint)
    else:
        full = load_torchvision(clf, checkpoint=checkpoint, class_names=class_names, preprocess=preprocess,
                                trust_checkpoint=trust_checkpoint)
    transforms = full.preprocess
    bare = FeatureHeadClassifier(full.features, full.head, nn.Identity(), full.class_names, info=full.info)
    bare.to(device).eval()
    owner = transforms if isinstance(transforms, nn.Module) else getattr(transforms, "__self__", None)
    if isinstance(owner, nn.Module):
        owner.to(device)
    return bare, (transforms if use_tfms else None)


def freeze_classifier(clf: FeatureHeadClassifier, device: torch.device | str,
                      dtype: torch.dtype = torch.float32) -> FeatureHeadClassifier:
    clf.to(device=device, dtype=dtype)
    clf.eval()
    clf.requires_grad_(False)
    return clf


__all__ = [
    "CheckpointError",
    "ClassifierError",
    "FeatureHeadClassifier",
    "Normalize",
    "ORIGINAL_INPUT_SIDE",
    "PREPROCESS",
    "ROBUST50_DEFAULT_CHECKPOINT",
    "ResizeNormalize",
    "as_feature_head_classifier",
    "build_classifier_and_transforms",
    "check_torchvision_name",
    "freeze_classifier",
    "load_robust_resnet50",
    "load_torchvision",
    "read_state_dict",
    "resolve_preprocess",
    "top_feature_neurons",
    "wrap_pipeline_classifier",
]
