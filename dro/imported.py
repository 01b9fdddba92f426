"""Bring your own classifier: a torchvision model by name, a checkpoint of a torchvision architecture, or a
Hugging Face image-classification model (hub id or local folder), made into the pipeline's one classifier
contract (:class:`common.classifier.Classifier`: [0, 1] images, its own preprocessing, ``backbone`` + linear
``head``) and saved where ``train_erm`` would have put the model it trains. Every later stage (DEXTER, the
reasoning, the labelling, retraining) then reads it like a trained one, and retraining starts from it.

Checkpoints are read by :func:`common.checkpoints.read_state_dict` (the reader the DEXTER CLI uses for
``resnet50``/``robust50``/``vit_b_16``: ``.safetensors`` or ``weights_only`` ``.pt``, wrapper keys and
``module.`` prefixes removed). The classifier must predict the dataset's classes, in the dataset's order
(a Hugging Face model whose ``id2label`` names the dataset's classes is reordered to them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from common.classifier import (
    Classifier,
    ModelError,
    build_classifier,
    head_outputs,
    split_last_linear,
    torchvision_network,
)


@dataclass(frozen=True)
class ClassifierSource:
    """Where the audited classifier comes from (the ``classifier`` params section).

    ``kind``: ``torchvision`` (``name`` = an architecture; ``checkpoint`` = its weights, else ImageNet
    weights when ``pretrained``) or ``huggingface`` (``name`` = a hub id or a local folder)."""

    kind: str
    name: str
    checkpoint: str | None = None
    pretrained: bool = True

    def describe(self) -> str:
        if self.kind == "huggingface":
            return f"Hugging Face {self.name}"
        weights = f"checkpoint {self.checkpoint}" if self.checkpoint else (
            "ImageNet weights" if self.pretrained else "random weights")
        return f"torchvision {self.name} ({weights})"


def import_classifier(source: ClassifierSource, class_names: tuple[str, ...], image_size: int) -> Classifier:
    """The classifier of ``source`` as a :class:`Classifier` over ``class_names``. Raises ModelError."""
    if source.kind == "torchvision":
        model = _from_torchvision(source, class_names, image_size)
    elif source.kind == "huggingface":
        model = _from_huggingface(source, class_names)
    else:
        raise ModelError(f"classifier.source: unknown kind {source.kind!r}; expected torchvision or huggingface")
    return model.eval()


def _check_classes(n: int, class_names: tuple[str, ...], what: str) -> None:
    if n != len(class_names):
        raise ModelError(f"{what} has {n} outputs, but the dataset has {len(class_names)} classes "
                         f"{list(class_names)}: audit a classifier of this dataset's classes (a checkpoint "
                         f"fine-tuned on them, in this order)")


def _from_torchvision(source: ClassifierSource, class_names: tuple[str, ...], image_size: int) -> Classifier:
    import torchvision

    from common.checkpoints import CheckpointError, check_torchvision_name, read_state_dict

    try:
        check_torchvision_name(source.name)
        state = read_state_dict(source.checkpoint) if source.checkpoint else None
    except CheckpointError as e:
        raise ModelError(f"classifier: {e}") from None
    if state is not None:
        what = f"classifier.checkpoint {source.checkpoint}"
        _check_classes(head_outputs(state, what), class_names, source.describe())
        net = torchvision_network(source.name, state=state, what=what)
    elif source.pretrained:
        weights = torchvision.models.get_model_weights(source.name).DEFAULT
        _check_classes(len(weights.meta["categories"]), class_names, source.describe())
        net = torchvision_network(source.name, weights=weights, otherwise="give classifier.checkpoint")
    else:
        net = torchvision_network(source.name, num_classes=len(class_names))
    head = split_last_linear(net)
    model = build_classifier(f"torchvision:{source.name}", class_names, image_size)
    model.backbone.load_state_dict(net.state_dict())
    model.head.load_state_dict(head.state_dict())
    return model


def _from_huggingface(source: ClassifierSource, class_names: tuple[str, ...]) -> Classifier:
    try:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        hf = AutoModelForImageClassification.from_pretrained(source.name)
        processor = AutoImageProcessor.from_pretrained(source.name)
    except (OSError, ValueError) as e:
        local = Path(source.name).is_dir()
        raise ModelError(
            f"classifier: cannot load Hugging Face image classifier {source.name!r} "
            f"({'local folder' if local else 'hub id'}; {' '.join(str(e).split())[:200]}); it needs config.json, "
            f"the weights and preprocessor_config.json"
        ) from None
    labels = [hf.config.id2label[i] for i in range(len(hf.config.id2label))]
    _check_classes(len(labels), class_names, source.describe())
    order = list(range(len(labels)))
    if set(labels) == set(class_names):  # named classes: map them onto the dataset's order
        order = [labels.index(c) for c in class_names]
    elif set(labels) & set(class_names):
        raise ModelError(f"classifier: {source.name} labels {labels} name only some of the dataset's classes "
                         f"{list(class_names)}")
    mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    size = processor.size  # a dict, or transformers 5's SizeDict: the input side is its shortest_edge or height
    side = size if isinstance(size, int) else next(
        (v for k in ("shortest_edge", "height") if (v := (size.get(k) if isinstance(size, dict)
                                                           else getattr(size, k, None)))), None)
    if not side:
        raise ModelError(f"classifier: {source.name}: the image processor gives no input size ({size})")
    model = build_classifier("huggingface", class_names, int(side), mean=mean, std=std,
                             hf_config=json.loads(hf.config.to_json_string(use_diff=False)))
    head = split_last_linear(hf)
    model.backbone.model.load_state_dict(hf.state_dict())
    with torch.no_grad():
        model.head.weight.copy_(head.weight[order])
        model.head.bias.copy_(head.bias[order])
    return model


__all__ = ["ClassifierSource", "import_classifier"]


def save_imported(model: Classifier, source: ClassifierSource, out_dir: Path) -> None:
    """Save like a trained classifier, with a record saying where it came from (``train.json``: the erm
    row of the retraining is then this model as it is, see :func:`dro.pipeline.reuse_erm`)."""
    from common.classifier import save_classifier
    from common.io import atomic_write_json
    from dro.pipeline import ERM_RECORD

    save_classifier(model, out_dir)
    atomic_write_json(Path(out_dir) / ERM_RECORD, {"imported": source.describe(), "source": vars(source),
                                                   "best_epoch": None, "selection": "imported", "history": []})
