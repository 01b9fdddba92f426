"""The ``labelling`` and ``dro`` sections (docs/METHOD.md sections 3-5). Owned by dro."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from dro.config import default
from stages.params.base import Section

MethodName = Literal["erm", "groupdro_oracle", "dro_dexter"]


class LabellingSection(Section):
    """CLIP zero-shot slice labelling. ``templates``: ``auto`` (world templates for the synthetic world,
    the 80 CLIP ImageNet templates otherwise), ``imagenet``, ``world``, or an explicit list; each must
    contain one ``{}``. ``class_templates``: None = the dataset's B2T class templates."""

    temperature: float = Field(0.02, gt=0)
    batch_size: int = Field(256, ge=1)
    templates: Literal["auto", "imagenet", "world"] | list[str] = "auto"
    class_templates: list[str] | None = None

    @field_validator("templates", "class_templates")
    @classmethod
    def _one_slot(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("must not be empty")
            bad = [t for t in v if t.count("{}") != 1]
            if bad:
                raise ValueError(f"each template needs exactly one '{{}}': {bad[0]!r}")
        return v


class LastLayerSettings(Section):
    """Training of the head alone over cached features (``dro.mode: last_layer``)."""

    epochs: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam"] = "adam"
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class DroSection(Section):
    """Group-DRO retraining; the loss settings' defaults are the trainer's (:mod:`dro.config`)."""

    eta: float = Field(default("eta"), gt=0)
    adjustment: float = Field(default("adjustment"), ge=0)
    normalize_loss: bool = default("normalize_loss")
    balanced_sampling: bool = default("balanced_sampling")
    mode: Literal["full", "last_layer"] = "full"
    methods: list[MethodName] = Field(default_factory=lambda: ["erm", "groupdro_oracle", "dro_dexter"])
    eval_batch_size: int = Field(default("eval_batch_size"), ge=1)  # the retraining runs' evaluation batch
    last_layer: LastLayerSettings = LastLayerSettings()

    @field_validator("methods")
    @classmethod
    def _distinct(cls, v):
        if not v or len(set(v)) != len(v):
            raise ValueError("methods must be a non-empty list without repeats")
        return v
