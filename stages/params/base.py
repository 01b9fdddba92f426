"""Shared pieces of the params schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, values are validated, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
