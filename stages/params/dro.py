"""The ``labelling`` and ``dro`` sections (METHOD.md sections 3-5). Owned by dro."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.params.base import Section


class LabellingSection(Section):
    temperature: float = Field(0.02, gt=0)
    batch_size: int = Field(256, ge=1)


class DroSection(Section):
    eta: float = Field(0.01, gt=0)
    adjustment: float = Field(0.0, ge=0)
    normalize_loss: bool = False
    balanced_sampling: bool = True
    mode: Literal["full", "last_layer"] = "full"
