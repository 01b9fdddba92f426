"""The ``classifier`` section: which classifier the pipeline audits (and retrains from)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stages.params.base import Section


class ClassifierSection(Section):
    """``source: trained`` (default): ``train_erm`` trains the audited classifier on the dataset.
    ``torchvision``: the architecture ``name`` with the weights of ``checkpoint`` (a state dict,
    ``.safetensors`` or ``.pt``), else ImageNet weights when ``pretrained`` (then the dataset must have the
    1000 ImageNet classes), else random weights. ``huggingface``: an image-classification model, ``name`` =
    a hub id or a local folder. The classifier must predict the dataset's classes in the dataset's order.
    ``image_size``: the torchvision input side (null: the dataset's ``train.image_size``)."""

    source: Literal["trained", "torchvision", "huggingface"] = "trained"
    name: str | None = None
    checkpoint: str | None = None
    pretrained: bool = True
    image_size: int | None = Field(None, ge=8)

    @model_validator(mode="after")
    def _consistent(self) -> ClassifierSection:
        if self.source == "trained":
            if self.name or self.checkpoint:
                raise ValueError("source is 'trained' (train_erm trains it): set source to torchvision or "
                                 "huggingface to audit name/checkpoint")
        elif not self.name:
            raise ValueError(f"source {self.source!r} needs name (a torchvision architecture, or a Hugging Face "
                             "id or folder)")
        if self.checkpoint and self.source != "torchvision":
            raise ValueError("checkpoint is the weights of a torchvision architecture: set source: torchvision")
        return self

    @property
    def imported(self) -> bool:
        return self.source != "trained"
