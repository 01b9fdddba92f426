"""The ``reasoning`` section: captions, reports and attributes (docs/METHOD.md section 2). Owned by reasoning.

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
    counterfactual: str | None = None


class VerifySection(Section):
    """The counterfactual test that turns keywords into verdicts (fresh noise, same generator as DEXTER).

    On the synthetic world every prompt of the world is at most shapes x colours x backgrounds, and the
    answers are cached per prompt, so the cost is bounded by that product times ``n_images``.
    """

    # off: the backend's proposal is handed on, and every output says UNVERIFIED
    enabled: bool = True
    n_images: int = Field(32, ge=1)  # fresh-noise images per counterfactual prompt
    alpha: float = Field(0.05, gt=0, lt=1)  # family-wise error rate per class (Holm over its tests)
    # smallest flip or drop effect, against EVERY alternative, reported as a shortcut (an unbiased classifier
    # still shifts ~0.15 with the background on generated images, pooled over the alternatives)
    min_effect: float = Field(0.15, ge=0, le=1)
    # a content (say "a red square on ...") counts only if the classifier calls it its class in this share of
    # the images of at least one of its prompts: otherwise the generated images are outside what it learnt
    min_recognition: float = Field(0.5, ge=0, le=1)
    # a keyword whose flip or drop test passes is still not verified when the OTHER test's interval lies below
    # zero (some alternative makes the class MORE likely): an attribute that blurs images, or another class's cue
    veto_contradicted: bool = True
    # a flip passes only when its effect (>= min_effect, against every alternative) shows in the content of at
    # least this many other classes (all of them, when fewer are tested): one class's confusion is not a cue
    min_flip_classes: int = Field(2, ge=1)
    # a drop passes only when it exceeds, by min_effect, what the attribute does to the OTHER classes' own
    # recognition (an attribute that makes every shape easier to see is not one class's shortcut)
    visibility_control: bool = True
    # a drop passes only when its effect shows in at least this many contexts of the class (its content in one
    # setting of the other attribute; all of them when fewer): one cell cannot say which of its values matters
    min_drop_contexts: int = Field(2, ge=1)
    # likewise a flip: its effect must show in at least this many contexts (settings of the other attribute,
    # the other classes' content pooled; all of them when fewer): one cell cannot say which of its values matters
    min_flip_contexts: int = Field(2, ge=1)
    seed: int = 0  # noise of image i is seeded by (seed, i), independent of DEXTER's optimisation noise
    # count only images that CLIP zero-shot agrees show their prompt's class and tested value, so a generator
    # that draws one value badly is not mistaken for a classifier that needs another (dexter/verify/judge.py)
    judge: bool = True
    judge_clip: str | None = None  # the judge's CLIP (hub id or folder); null: the labelling CLIP (models.clip)
    batch_size: int = Field(64, ge=1)  # images per generator call (no gradients are kept)
    activation_images: int = Field(32, ge=1)  # images per prompt for activation scores (the paper: 100)
    caption_frames: int = Field(4, ge=0)  # fresh-noise frames per DEXTER run that are captioned
    max_flip_classes: int = Field(8, ge=1)  # other classes whose images the flip test uses
    max_alternatives: int = Field(4, ge=1)  # alternatives per attribute on real data


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
    verify: VerifySection = VerifySection()
