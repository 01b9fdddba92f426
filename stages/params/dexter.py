"""The ``dexter`` section: prompt optimisation settings (METHOD.md section 1). Owned by the DEXTER core."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.params.base import Section


class DexterSection(Section):
    mode: Literal["single", "multi"] = "single"
    runs_per_class: int = Field(4, ge=1)
    steps: int = Field(1000, ge=1)
    lr: float = Field(0.1, gt=0)
    early_stop: int = Field(3, ge=0)
    num_feature_neurons: int = Field(5, ge=0)
    batch_size: int = Field(1, ge=1)
    inference_steps: int = Field(4, ge=1)
    guidance_scale: float = Field(1.0, ge=0)
    resolution: int | None = Field(None, ge=8)
    seed: int = 0
    classes: list[int] | None = None
