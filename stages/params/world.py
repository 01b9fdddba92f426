"""The ``world`` section: the small world models that stand in for SD, BERT and CLIP offline."""

from __future__ import annotations

from pydantic import Field

from stages.params.base import Section


class WorldSection(Section):
    """Where the committed world models live and how their quality gates are measured.

    The model folders themselves are named in ``models.<synthetic.models>``; ``root`` is the folder
    holding the manifest (``world.json``) that says which world they cover (null: the folder above
    those models' CLIP, e.g. ``data/world4``).
    """

    root: str | None = None
    gate_samples: int = Field(1200, ge=10)
    gate_seed: int = 0
