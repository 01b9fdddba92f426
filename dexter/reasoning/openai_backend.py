"""A VLM and an LLM behind any OpenAI-compatible chat-completions endpoint.

Works with OpenAI itself and with local servers that speak the same protocol (Ollama, vLLM,
llama.cpp server): set ``base_url`` and the model ids. The API key is read ONLY from the environment
variable named by ``api_key_env`` and lives only inside the client object: it is never logged, cached
or written; error messages are scrubbed of it in case a server echoes it back.

Production behaviour comes mostly from the ``openai`` client itself: its timeout, and its retries
with exponential backoff on 408/409/429/5xx and dropped connections (``max_retries``). On top of that:
bounded concurrency for captions, an answer cache (:mod:`dexter.reasoning.cache`), a retry when an
endpoint answers with no choices or empty content, JSON repair for the attributes, and a sanity check
with a retry for captions (:func:`dexter.reasoning.schema.check_caption`): a caption that still fails is
dropped and counted, and no answer that failed its check is ever cached.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from common.progress import progress_bar
from dexter.reasoning.backend import REPORT_SECTIONS, Evidence
from dexter.reasoning.cache import ResponseCache, cache_key
from dexter.reasoning.errors import ReasoningError
from dexter.reasoning.prompt_files import load_prompts
from dexter.reasoning.schema import AttributeProposal, check_caption, finalize_attributes

log = logging.getLogger(__name__)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A request that gets no answer fails after at most (max_retries + 1) * timeout_s plus the client's backoff
# between attempts (0.5 s, 1 s, 2 s ..., at most 8 s each): 3 x 40 s + 1.5 s, about 2 minutes, by default.
# The openai client's own defaults (10 minutes, 2 retries) would hang a stage for half an hour per request.
DEFAULT_TIMEOUT_S = 40.0
DEFAULT_MAX_RETRIES = 2
_LOCAL_PLACEHOLDER_KEY = "not-needed"


def png_data_uri(path: Path) -> str:
    """The image as ``data:image/png;base64,...``; non-PNG files are re-encoded as PNG."""
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_MAGIC):
        from PIL import Image

        buf = io.BytesIO()
        with Image.open(io.BytesIO(data)) as im:
            im.convert("RGB").save(buf, format="PNG")
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


class ChatClient:
    """One chat-completions call with caching, clear errors and empty-answer retries."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key_env: str,
        timeout_s: float,
        max_retries: int,
        cache_dir: str | Path | None,
        sampling: dict[str, Any],
        empty_retries: int = 2,
    ) -> None:
        import openai

        self._openai = openai
        api_key = os.environ.get(api_key_env, "")
        self._secret = api_key
        if not api_key:
            if base_url is None:
                raise ReasoningError(
                    f"no API key: set the environment variable {api_key_env} (reasoning.api_key_env), "
                    "or set reasoning.base_url to a local OpenAI-compatible server"
                )
            log.info("%s is not set; sending a placeholder key to %s (local servers ignore it)", api_key_env, base_url)
            api_key = _LOCAL_PLACEHOLDER_KEY
        self._api_key_env = api_key_env
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries)
        self.endpoint = str(self._client.base_url).rstrip("/")
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._sampling = dict(sampling)
        self._empty_retries = empty_retries
        self.cache = ResponseCache(cache_dir)
        self.requests = 0  # chat-completions calls made (each may include the client's own retries)
        self.cache_hits = 0
        self._count_lock = threading.Lock()  # captions run in threads

    def key(self, model: str, messages: list[dict], json_mode: bool) -> str:
        return cache_key(model, messages, self._params(json_mode))

    def _params(self, json_mode: bool) -> dict[str, Any]:
        params = dict(self._sampling)
        if json_mode:
            params["response_format"] = {"type": "json_object"}
        return params

    def complete(self, model: str, messages: list[dict], *, json_mode: bool = False,
                 cacheable: Callable[[str], bool] | None = None) -> str:
        """The first choice's text, from the cache when this exact request was answered before.

        ``cacheable``: an answer it rejects is returned (the caller asks for a repair) but not cached, and
        such an answer found in the cache (cached before the check existed) is dropped and asked again.
        """
        key = self.key(model, messages, json_mode)
        hit = self.cache.get(key)
        if hit is not None and cacheable is not None and not cacheable(hit):
            self.cache.delete(key)
            hit = None
        if hit is not None:
            with self._count_lock:
                self.cache_hits += 1
            return hit
        for attempt in range(self._empty_retries + 1):
            with self._count_lock:
                self.requests += 1
            response = self._call(model, messages, json_mode)
            choices = getattr(response, "choices", None) or []
            text = (choices[0].message.content or "").strip() if choices and choices[0].message else ""
            if text:
                if cacheable is None or cacheable(text):
                    self.cache.set(key, text)
                return text
            log.warning("%s: model %r returned no answer (attempt %d); retrying", self.endpoint, model, attempt + 1)
        raise ReasoningError(
            f"{self.endpoint}: model {model!r} returned an empty answer (no choices or no content) "
            f"{self._empty_retries + 1} times in a row"
        )

    def _call(self, model: str, messages: list[dict], json_mode: bool) -> Any:
        oa = self._openai
        try:
            return self._client.chat.completions.create(model=model, messages=messages, **self._params(json_mode))
        except oa.NotFoundError as e:
            raise ReasoningError(
                f"model {model!r} not found at {self.endpoint} (HTTP 404: {self._detail(e)}); check the model id "
                "(reasoning.vlm / reasoning.llm) and reasoning.base_url (OpenAI-compatible servers usually end in /v1)"
            ) from None
        except (oa.AuthenticationError, oa.PermissionDeniedError) as e:
            raise ReasoningError(
                f"{self.endpoint} rejected the API key read from ${self._api_key_env} "
                f"(HTTP {e.status_code}: {self._detail(e)})"
            ) from None
        except oa.APITimeoutError as e:
            raise ReasoningError(
                f"{self.endpoint}: model {model!r} did not answer within {self._timeout_s:g} s "
                f"({self._attempts(e)}); raise reasoning.timeout_s or check the server"
            ) from None
        except oa.APIConnectionError as e:
            raise ReasoningError(
                f"cannot reach {self.endpoint} ({self._attempts(e)}): {self._scrub(str(e.__cause__ or e))}"
            ) from None
        except oa.APIStatusError as e:  # 400, 422 (never retried), or 429/5xx still failing after the retries
            raise ReasoningError(
                f"{self.endpoint}: request for model {model!r} failed with HTTP {e.status_code} "
                f"after {self._attempts(e)}: {self._detail(e)}"
            ) from None

    def _attempts(self, e: Exception) -> str:
        """How many requests were really sent ("1 attempt", "6 attempts"): the client retries only some
        failures (timeouts, dropped connections, 408/409/429/5xx), and says which retry each request was
        in its ``x-stainless-retry-count`` header."""
        try:
            n = int(e.request.headers["x-stainless-retry-count"]) + 1
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError):  # no request or no header
            return f"up to {self._max_retries + 1} attempts"
        return f"{n} attempt{'s' if n != 1 else ''}"

    def _detail(self, e: Exception) -> str:
        body = getattr(e, "body", None)
        msg = body.get("message") if isinstance(body, dict) else None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            msg = body["error"].get("message")
        return self._scrub(str(msg or getattr(e, "message", e)))[:500]

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def close(self) -> None:
        self._client.close()
        self.cache.close()


class OpenAIBackend:
    """Captions by a VLM, the report and the attributes by an LLM (docs/METHOD.md section 2)."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        vlm: str = "gpt-4o-mini",
        llm: str = "gpt-4o-mini",
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.2,
        top_p: float = 1.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        concurrency: int = 4,
        cache_dir: str | Path | None = None,
        prompts: dict[str, str | Path | None] | None = None,
        json_mode: bool = True,
        json_retries: int = 2,
        max_attributes: int = 8,
        caption_retries: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ReasoningError(f"concurrency must be at least 1, got {concurrency}")
        self.vlm, self.llm = vlm, llm
        self.prompts = load_prompts(prompts)
        self.concurrency = concurrency
        self.json_mode = json_mode
        self.json_retries = json_retries
        self.caption_retries = caption_retries
        self.max_attributes = max_attributes
        sampling = {"temperature": temperature, "top_p": top_p, "frequency_penalty": 0.0, "presence_penalty": 0.0}
        self.chat = ChatClient(
            base_url=base_url, api_key_env=api_key_env, timeout_s=timeout_s, max_retries=max_retries,
            cache_dir=cache_dir, sampling=sampling,
        )
        self.written_by = f"language models at {self.chat.endpoint}: captions by {vlm}, report and attributes by {llm}"

    # -- captions -----------------------------------------------------------------------------
    def caption(self, class_name: str, images: Sequence[Path]) -> list[str | None]:
        if not images:
            return []
        with (ThreadPoolExecutor(max_workers=min(self.concurrency, len(images))) as pool,
              progress_bar(desc=f"captions of {class_name}", total=len(images), unit="image") as bar):
            futures = [pool.submit(self._caption_one, class_name, Path(p)) for p in images]
            for f in futures:
                f.add_done_callback(lambda _: bar.update(1))
            wait(futures, return_when="FIRST_EXCEPTION")
            for f in futures:
                if f.done() and f.exception() is not None:
                    for g in futures:
                        g.cancel()
                    raise f.exception()
            return [f.result() for f in futures]

    def _caption_one(self, class_name: str, path: Path) -> str | None:
        """The frame's caption after :func:`check_caption`, asking again with the problem named up to
        ``caption_retries`` times; None (the frame is dropped) if no answer passes."""
        messages = [
            {"role": "system", "content": self.prompts["caption"]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"This image was generated for the class \"{class_name}\". Describe it."},
                    {"type": "image_url", "image_url": {"url": png_data_uri(path)}},
                ],
            },
        ]
        first_key = self.chat.key(self.vlm, messages, False)
        error = ""
        for attempt in range(self.caption_retries + 1):
            text = self.chat.complete(self.vlm, messages, cacheable=_is_caption)
            try:
                caption = check_caption(text)
            except ValueError as e:
                error = str(e)
                log.warning("caption of %s: not a caption (%s): %.80r; asking again", path.name, error, text)
                messages = messages + [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": f"That reply is not usable: {error}. Reply with ONE plain factual "
                     "sentence describing the image, and nothing else."},
                ]
                continue
            if attempt:  # a rerun asks the first question again: answer it with the repaired caption
                self.chat.cache.set(first_key, caption)
            return caption
        log.warning("caption of %s dropped: %d answers were not a caption (last problem: %s)", path,
                    self.caption_retries + 1, error)
        return None

    # -- report ---------------------------------------------------------------------------------
    def report(self, evidence: Evidence) -> str:
        messages = [
            {"role": "system", "content": self.prompts["report"]},
            {"role": "user", "content": _evidence_text(evidence)},
        ]
        text = self.chat.complete(self.llm, messages)
        missing = _missing_sections(text)
        if missing:
            log.warning("report for %r lacks %s; asking once more", evidence.class_name, missing)
            messages += [
                {"role": "assistant", "content": text},
                {"role": "user", "content": "Rewrite the report with ALL four level-2 headings, exactly: "
                 + "; ".join(f"## {s}" for s in REPORT_SECTIONS)},
            ]
            text = self.chat.complete(self.llm, messages)
            for section in _missing_sections(text):  # keep the structure; say plainly what is missing
                text += f"\n\n## {section}\n\n(the language model did not write this section)"
        header = f"# Bias report: class \"{evidence.class_name}\"\n\n_Written by {self.written_by}._\n\n"
        return header + text.strip() + "\n"

    # -- attributes -----------------------------------------------------------------------------
    def attributes(self, evidence: Evidence, report: str) -> tuple[list[str], str]:
        messages = [
            {"role": "system", "content": self.prompts["attributes"]},
            {"role": "user", "content": _evidence_text(evidence) + "\n\nBias report:\n" + report},
        ]
        keys = []
        error = ""
        for attempt in range(self.json_retries + 1):
            keys.append(self.chat.key(self.llm, messages, self.json_mode))
            text = self.chat.complete(self.llm, messages, json_mode=self.json_mode)
            try:
                proposal = parse_attributes(text, evidence.class_name, self.max_attributes)
                return proposal.attributes, proposal.rationale
            except ValueError as e:
                error = str(e)
                log.warning("attributes for %r: invalid answer (%s); asking for a repair", evidence.class_name, error)
                messages = messages + [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": f"That reply is not valid: {error}. Reply again with ONLY the JSON "
                     'object {"attributes": [...], "rationale": "..."}, no other text.'},
                ]
        for key in keys:  # never keep a chain that ended in failure: a rerun must ask again
            self.chat.cache.delete(key)
        raise ReasoningError(
            f"model {self.llm!r} at {self.chat.endpoint} returned no valid attributes JSON for class "
            f"{evidence.class_name!r} after {self.json_retries + 1} attempts; last problem: {error}"
        )

    # -- counterfactual prompts (real data: the world's vocabulary is unknown) -------------------------
    def counterfactuals(self, class_name: str, attribute: str, class_names: Sequence[str]):
        """A validated :class:`CounterfactualProposal` (or the model's reason it is not testable), JSON-repaired."""
        from dexter.reasoning.proposals import counterfactual_request, parse_counterfactual

        messages = [{"role": "system", "content": self.prompts["counterfactual"]},
                    {"role": "user", "content": counterfactual_request(class_name, attribute, class_names, 4)}]
        keys, error = [], ""
        for _ in range(self.json_retries + 1):
            keys.append(self.chat.key(self.llm, messages, self.json_mode))
            text = self.chat.complete(self.llm, messages, json_mode=self.json_mode)
            try:
                return parse_counterfactual(text)
            except ValueError as e:
                error = str(e)
                messages = messages + [{"role": "assistant", "content": text},
                                       {"role": "user", "content": f"That reply is not valid: {error}. Reply again "
                                        "with ONLY the JSON object described in the instructions."}]
        for key in keys:  # a failed chain is not kept: a rerun asks again
            self.chat.cache.delete(key)
        return f"model {self.llm!r} returned no valid counterfactual JSON after {self.json_retries + 1} attempts ({error})"

    def close(self) -> None:
        self.chat.close()


def _is_caption(text: str) -> bool:
    try:
        check_caption(text)
    except ValueError:
        return False
    return True


def parse_attributes(text: str, class_name: str, limit: int | None = None) -> AttributeProposal:
    """Validate an LLM answer as an :class:`AttributeProposal`; raise ValueError saying what is wrong."""
    body = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", body, flags=re.S)
    if fenced:
        body = fenced.group(1).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0:
        raise ValueError("no JSON object found")
    try:
        data = json.loads(body[start : end + 1] if end > start else body[start:])
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("the JSON must be an object")
    try:
        proposal = AttributeProposal.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"{'.'.join(map(str, err['loc'])) or 'object'}: {err['msg']}") from None
    kept = finalize_attributes(proposal.attributes, class_name, limit)
    if not kept:
        raise ValueError(f"the attributes only repeat the class name {class_name!r}; name the spurious attribute")
    return AttributeProposal(attributes=kept, rationale=proposal.rationale)


def _missing_sections(text: str) -> list[str]:
    low = text.lower()
    return [s for s in REPORT_SECTIONS if s.lower() not in low]


def _evidence_text(evidence: Evidence) -> str:
    meta = evidence.meta
    lines = [f"Class: {meta.class_name}", f"DEXTER mode: {meta.mode}-word"]
    if meta.keywords:
        lines.append("Discovered keywords (most supported first): " + ", ".join(meta.keywords))
    for r in meta.runs:
        lines.append(f"- run {r.run}: words {r.words}; images assigned to the class: {r.hits}; prompt: {r.prompt!r}")
    lines.append(f"\nCaptions of {len(evidence.captions)} images the classifier assigned to this class:")
    lines += [f"{i}. {c}" for i, c in enumerate(evidence.captions.values(), 1)]
    if evidence.verification is not None:  # measured on the classifier: binding for the report
        from dexter.reasoning.summary import verification_text

        lines += ["", verification_text(evidence.verification)]
    return "\n".join(lines)
