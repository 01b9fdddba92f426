"""The ``reasoning`` section: captions, reports and attributes (METHOD.md section 2). Owned by reasoning.

The API key is NEVER a param: only the NAME of the environment variable that holds it is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.params.base import Section


class PromptFiles(Section):
    """Optional replacements for the packaged system prompts (dexter/reasoning/prompts/*.txt)."""

    caption: str | None = None
    report: str | None = None
    attributes: str | None = None


class ReasoningSection(Section):
    backend: Literal["offline", "openai"] = "offline"
    # openai backend: any OpenAI-compatible endpoint (OpenAI when base_url is null; Ollama, vLLM, ...)
    base_url: str | None = None
    api_key_env: str = Field("OPENAI_API_KEY", min_length=1)  # name of the env var holding the key
    vlm: str = "gpt-4o-mini"
    llm: str = "gpt-4o-mini"
    temperature: float = Field(0.2, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    # per request; a request that gets no answer fails after (max_retries + 1) * timeout_s plus a few
    # seconds of backoff: about 2 minutes with these defaults
    timeout_s: float = Field(40.0, gt=0)
    max_retries: int = Field(2, ge=0)  # retries of timeouts, dropped connections, 408/409/429/5xx (not 400)
    concurrency: int = Field(4, ge=1)
    json_mode: bool = True  # ask for response_format json_object (turn off for servers that reject it)
    json_retries: int = Field(2, ge=0)  # repair requests after an invalid attributes answer
    prompts: PromptFiles = PromptFiles()
    cache_dir: str | None = "outputs/reasoning/.cache"  # null: no answer cache
    # offline backend
    clip: str | None = None  # CLIP for retrieval captions; null: the model set's clip
    phrase_bank: str = "auto"  # auto: the synthetic world's captions, else the packaged "general" bank; or a file
    batch_size: int = Field(32, ge=1)
    min_lift: float = Field(1.25, ge=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    # both
    max_attributes: int = Field(8, ge=1)
