"""The ``reasoning`` section: captions, reports and attributes (METHOD.md section 2). Owned by reasoning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.params.base import Section


class ReasoningSection(Section):
    backend: Literal["offline", "openai"] = "offline"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    vlm: str = "gpt-4o-mini"
    llm: str = "gpt-4o-mini"
    temperature: float = Field(0.2, ge=0, le=2)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    concurrency: int = Field(4, ge=1)
