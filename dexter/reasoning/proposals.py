"""Counterfactual proposals: how to test one keyword of one class when the world's vocabulary is unknown.

A proposal names the attribute's kind, the phrase to test (``value``), its alternatives (other values of
the same kind, NOT synonyms) and a prompt template with a ``{class}`` and a ``{value}`` slot, so that the
test can hold the content fixed and change only the attribute. The language-model backend asks for it as
JSON (validated, repaired like the attributes); the offline backend builds it from its phrase bank's
groups.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dexter.reasoning.schema import MAX_ATTRIBUTE_CHARS, MAX_ATTRIBUTE_WORDS, clean_phrase

MAX_TEMPLATE_CHARS = 160


class CounterfactualProposal(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: str = Field(min_length=1)
    value: str = Field(min_length=1)
    alternatives: tuple[str, ...] = Field(min_length=1)
    template: str

    @field_validator("value")
    @classmethod
    def _phrase(cls, v: str) -> str:
        return _short(v)

    @field_validator("alternatives")
    @classmethod
    def _phrases(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_short(a) for a in v))

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        v = " ".join(str(v).split())
        if v.count("{class}") != 1 or v.count("{value}") != 1:
            raise ValueError("template must contain {class} and {value} exactly once each")
        if re.search(r"\{(?!class\}|value\})", v) or len(v) > MAX_TEMPLATE_CHARS:
            raise ValueError("template must be one short sentence with only the slots {class} and {value}")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> CounterfactualProposal:
        if self.value in self.alternatives:
            raise ValueError(f"the alternatives must not repeat the value {self.value!r}")
        return self


def _short(text: str) -> str:
    phrase = clean_phrase(text)
    if not phrase or len(phrase) > MAX_ATTRIBUTE_CHARS or len(phrase.split()) > MAX_ATTRIBUTE_WORDS:
        raise ValueError(f"{text!r} is not a short phrase")
    return phrase


def parse_counterfactual(text: str) -> CounterfactualProposal | str:
    """A validated proposal, or the model's reason when it says the keyword is not testable.

    Raises ValueError saying what is wrong (the caller asks for a repair).
    """
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object found")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("the JSON must be an object")
    if data.get("testable") is False:
        return "the language model says it is not an attribute: " + str(data.get("reason") or "no reason given")[:200]
    try:
        return CounterfactualProposal.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"{'.'.join(map(str, err['loc'])) or 'object'}: {err['msg']}") from None


def counterfactual_request(class_name: str, attribute: str, class_names: Sequence[str], max_alternatives: int) -> str:
    others = [n for n in class_names if n != class_name]
    shown = ", ".join(others[:20]) + (f" and {len(others) - 20} more" if len(others) > 20 else "")
    return (f"Class: {class_name}\nOther classes of the classifier: {shown}\nKeyword to test: {attribute}\n"
            f"Propose at most {max_alternatives} alternatives.")


__all__ = ["CounterfactualProposal", "counterfactual_request", "parse_counterfactual"]
