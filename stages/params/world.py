"""The ``world`` section: the small world models that stand in for SD, BERT and CLIP offline."""

from __future__ import annotations

from pydantic import Field

from stages.params.base import Section


class WorldSection(Section):
    gate_samples: int = Field(200, ge=10)
