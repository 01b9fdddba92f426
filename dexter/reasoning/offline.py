"""The offline backend: CLIP-retrieval captions and statistics instead of language models.

Default for the embedded synthetic world and for users without an endpoint. Captions: each frame
gets the phrase of the bank whose CLIP text embedding is closest to the frame's CLIP image
embedding. Report and attributes: which words are over-represented in this class's captions relative
to the bank (:mod:`dexter.reasoning.stats`), plus DEXTER's keywords ranked by support. Nothing here
knows what the world looks like: for the synthetic world the bank is the world's caption vocabulary,
and the shortcut value (say "water" for class circle) surfaces because the classifier's frames show
it far more often than the bank's base rate. These statistics only DESCRIBE the captioned frames: when the
counterfactual test ran (``Evidence.verification``), the bias hypothesis is its measured verdict. On real
data the bank's ``# group:`` sections supply the alternatives a keyword is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dexter.reasoning.backend import Evidence
from dexter.reasoning.bank import PhraseGroup, load_phrase_bank, load_phrase_groups, words_of
from dexter.reasoning.errors import ReasoningError
from dexter.reasoning.schema import class_name_forms, clean_phrase, finalize_attributes, singular
from dexter.reasoning.stats import KeywordSupport, WordStat, caption_word_stats, is_informative, keyword_support

OFFLINE_NOTICE = "written by the offline backend: no language model"


class Embedder(Protocol):
    """Joint text/image embedding space (unit-norm rows)."""

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, paths: Sequence[Path]) -> np.ndarray: ...


class ClipEmbedder:
    """The project's one CLIP encoder (:class:`common.clip.ClipEncoder`) as an :class:`Embedder`: texts and
    image files -> unit-norm rows."""

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 32) -> None:
        from common.clip import ClipEncoder, ClipError

        try:
            self.encoder = ClipEncoder.from_pretrained(str(path), device)
        except ClipError as e:
            raise ReasoningError(" ".join(str(e).split())[:400]) from None
        self.batch_size = batch_size

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_text(list(texts), self.batch_size).numpy()

    def embed_images(self, paths: Sequence[Path]) -> np.ndarray:
        return self.encoder.encode_images(_ImageFiles(paths), self.batch_size).numpy()

    def embed_pixels(self, images) -> np.ndarray:
        """Generated images as a (N, 3, H, W) tensor in [0, 1] (the verification judge's input)."""
        return self.encoder.encode_pixels(images, self.batch_size).numpy()


class _ImageFiles:
    """Image files in order, as the encoder reads a split (RGB PIL images)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return im.convert("RGB")


class OfflineBackend:
    """Captions by retrieval, report and attributes from keyword and caption statistics."""

    def __init__(
        self,
        *,
        clip: str | Path | None = None,
        phrases: Sequence[str] | None = None,
        bank: str | Path = "general",
        device: str = "cpu",
        batch_size: int = 32,
        min_lift: float = 1.25,
        alpha: float = 0.05,
        max_attributes: int = 8,
        embedder: Embedder | None = None,
    ) -> None:
        self.phrases = list(dict.fromkeys(phrases)) if phrases is not None else load_phrase_bank(bank)
        # attribute groups of the bank (the alternatives of a keyword on real data); a plain list has none
        self.groups: list[PhraseGroup] = [] if phrases is not None else load_phrase_groups(bank)
        if len(self.phrases) < 2:
            raise ReasoningError(f"the phrase bank holds {len(self.phrases)} phrase(s); retrieval needs at least 2")
        if embedder is None and clip is None:
            raise ReasoningError("the offline backend needs a CLIP model: pass clip=<path or hub id>")
        self._clip, self._device, self._batch_size = clip, device, batch_size
        self._embedder = embedder
        self._bank_embeddings: np.ndarray | None = None
        self.min_lift, self.alpha, self.max_attributes = min_lift, alpha, max_attributes
        self.written_by = (
            f"{OFFLINE_NOTICE} (captions: CLIP retrieval over a {len(self.phrases)}-phrase bank; "
            "report and attributes: keyword and caption statistics)"
        )

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:  # loaded on first use: building the backend stays cheap
            self._embedder = ClipEmbedder(self._clip, self._device, self._batch_size)
        return self._embedder

    def caption(self, class_name: str, images: Sequence[Path]) -> list[str]:
        if not images:
            return []
        if self._bank_embeddings is None:
            self._bank_embeddings = self.embedder.embed_texts(self.phrases)
        sims = self.embedder.embed_images(list(images)) @ self._bank_embeddings.T
        return [self.phrases[i] for i in sims.argmax(axis=1)]

    def _evidence(self, evidence: Evidence) -> _Findings:
        """Statistics shared by the report and the attributes (cheap: recomputed for each)."""
        captions = list(evidence.captions.values())
        support = [k for k in keyword_support(evidence.meta, captions) if is_informative(k.keyword)]
        stats = caption_word_stats(captions, self.phrases, min_lift=self.min_lift, alpha=self.alpha,
                                   extra_words=[k.keyword for k in support if " " not in k.keyword])
        by_word = {s.word: s for s in stats}
        forms = class_name_forms(evidence.class_name)
        contradicted = [k for k in support if k.keyword in by_word and by_word[k.keyword].under_represented]
        kept = [k for k in support if k not in contradicted]
        corroborated = [k for k in kept if k.keyword in by_word and by_word[k.keyword].over_represented]
        keywords = corroborated + [k for k in kept if k not in corroborated]
        over = [s for s in stats if s.over_represented]
        return _Findings(
            n_frames=len(captions),
            stats=[s for s in stats if s.frames > 0],
            keywords=keywords,
            corroborated=[k.keyword for k in corroborated],
            contradicted=contradicted,
            over=over,
            over_other=[s for s in over if singular(s.word) not in forms],
            keywords_other=[k for k in keywords if singular(k.keyword) not in forms],
        )

    def report(self, evidence: Evidence) -> str:
        name = evidence.class_name
        f = self._evidence(evidence)
        forms = class_name_forms(name)
        n_runs = len(evidence.meta.runs)

        lines = [f"# Bias report: class \"{name}\"", "", f"_{self.written_by}._", ""]
        lines += ["## Key attributes and visual features", ""]
        for k in f.keywords + f.contradicted:
            share = "no captions" if k.caption_share is None else f"in {k.caption_share:.0%} of the captions"
            note = (" - contradicted by the frames (rarer than chance), left out of the attributes"
                    if k in f.contradicted else " - corroborated by the captions" if k.keyword in f.corroborated else "")
            lines.append(f"- DEXTER keyword **{k.keyword}**: final word of {k.runs} of {n_runs} run(s), "
                         f"{k.hits} image(s) assigned to the class, {share}{note}")
        if not f.keywords and not f.contradicted:
            lines.append("- DEXTER found no informative keywords for this class.")
        common = sorted(f.stats, key=lambda s: (-s.frames, s.word))[:8]
        if common:
            lines.append("- Most frequent caption words: " + ", ".join(f"{s.word} ({s.share:.0%})" for s in common))
        lines += ["", "## Context analysis", ""]
        if f.n_frames:
            lines += [f"{f.n_frames} frame(s) that the classifier assigned to \"{name}\", captioned by retrieval. "
                      "Share of captions containing each word, against the share of phrase-bank phrases containing "
                      "it (what retrieval would give if the frames were unrelated to the word):", "",
                      "| word | frames | share | bank share | lift | p (binomial) |", "|---|---|---|---|---|---|"]
            lines += [f"| {s.word} | {s.frames} | {s.share:.0%} | {s.expected:.0%} | {s.lift:.2f} | {s.p_value:.2g} |"
                      for s in f.stats[:20]]
        else:
            lines.append("No frames were saved for this class, so there is no visual context to analyse.")
        lines += ["", "## Over-represented elements", ""]
        if f.over:
            lines += [f"- **{s.word}**: {s.frames}/{f.n_frames} frames ({s.share:.0%}) vs {s.expected:.0%} "
                      f"expected (lift {s.lift:.2f}, p = {s.p_value:.2g})"
                      + (" - the class itself" if singular(s.word) in forms else "") for s in f.over]
        else:
            lines.append(f"- No caption word is over-represented (lift >= {self.min_lift:g}, p < {self.alpha:g}).")
        lines += ["", "## Bias hypothesis", ""]
        if evidence.verification is not None:
            from dexter.reasoning.summary import VERIFIED_SECTION, verdict_sentence

            lines.append(verdict_sentence(evidence.verification)
                         + f" This verdict is measured on the classifier (see \"{VERIFIED_SECTION}\" below); the "
                         "word statistics above only describe the captioned frames.")
        else:
            lines.append("UNVERIFIED (word statistics only, no counterfactual test): " + _hypothesis(name, f))
        return "\n".join(lines) + "\n"

    def attributes(self, evidence: Evidence, report: str) -> tuple[list[str], str]:
        f = self._evidence(evidence)
        name = evidence.class_name
        # An attribute should be something the classifier was shown to respond to (a DEXTER keyword) that the
        # frames really show (corroborated). Caption words alone are weaker evidence: frames inherit their
        # prompt's words, so a word can be frequent in them without the classifier caring; they are used
        # only when no keyword is corroborated.
        phrases = finalize_attributes(f.corroborated, name, self.max_attributes)
        parts = [f"{OFFLINE_NOTICE}."]
        if not phrases:
            phrases = finalize_attributes([k.keyword for k in f.keywords] + [s.word for s in f.over], name,
                                          self.max_attributes)
            if phrases:
                parts.append("No keyword is corroborated by the captions: these are the remaining keywords and "
                             "the over-represented caption words.")
        if not phrases:
            # Nothing passed the tests. The labelling stage needs some text per class, so offer the words the
            # frames show more often than chance (lift > 1) or, failing that, the contradicted keywords, and
            # say plainly that the evidence is weak.
            weak = [s.word for s in sorted(f.stats, key=lambda s: -s.lift) if s.lift > 1.0]
            phrases = finalize_attributes(weak + [k.keyword for k in f.contradicted], name, 3)
            if phrases:
                parts.append("WEAK EVIDENCE: no keyword survived and no caption word is significantly "
                             "over-represented; these are the words the frames show most relative to the bank.")
        if f.keywords:
            parts.append("DEXTER keywords, those corroborated by the captions first, then by support (runs that "
                         "found them): " + ", ".join(f"{k.keyword} ({k.runs} run(s))" for k in f.keywords) + ".")
        if f.contradicted:
            parts.append("Left out because the frames show them less often than chance: "
                         + ", ".join(k.keyword for k in f.contradicted) + ".")
        if f.over:
            parts.append("Caption words over-represented in this class's frames relative to the phrase bank: "
                         + ", ".join(f"{s.word} ({s.share:.0%} vs {s.expected:.0%})" for s in f.over) + ".")
        parts.append(f"The class name \"{name}\" itself is excluded.")
        return phrases, " ".join(parts)

    def counterfactuals(self, class_name: str, attribute: str, class_names: Sequence[str]):
        """From the bank's groups: the group phrase that contains the keyword, against the group's phrases
        LEAST similar to it in CLIP text space (contrasts such as forest or desert for sea, not lake or river)."""
        from dexter.reasoning.proposals import CounterfactualProposal

        key = singular(clean_phrase(attribute))
        for group in self.groups:
            hits = [v for v in group.values if key in {singular(w) for w in words_of(v)}]
            if hits:
                break
        else:
            return "not a phrase of any attribute group of the phrase bank"
        value = hits[0]
        others = [v for v in group.values if v not in hits]
        if not others:
            return f"the bank's group {group.name!r} has no alternative to {value!r}"
        emb = self.embedder.embed_texts([value, *others])
        order = np.argsort(emb[1:] @ emb[0], kind="stable")[:4]
        return CounterfactualProposal(kind=group.name, value=value, alternatives=tuple(others[i] for i in order),
                                      template=group.template)

    def close(self) -> None:
        self._embedder = None


@dataclass(frozen=True)
class _Findings:
    n_frames: int
    stats: list[WordStat]  # words seen in the captions, most over-represented first
    keywords: list[KeywordSupport]  # informative, not contradicted; corroborated first
    corroborated: list[str]
    contradicted: list[KeywordSupport]
    over: list[WordStat]
    over_other: list[WordStat]  # over-represented words other than the class name
    keywords_other: list[KeywordSupport]  # keywords other than the class name


def _hypothesis(name: str, f: _Findings) -> str:
    if f.over_other:
        top = f.over_other[0]
        text = (f"**Likely biased.** Frames the classifier assigns to \"{name}\" show "
                + ", ".join(f"\"{s.word}\" ({s.share:.0%} vs {s.expected:.0%} expected)" for s in f.over_other[:4])
                + f" far more often than chance; the strongest signal is \"{top.word}\". The classifier may be "
                "using it as a shortcut for the class.")
        agree = [w for w in f.corroborated if w in {s.word for s in f.over_other}]
        if agree:
            text += " DEXTER's optimised prompts settled on the same word(s): " + ", ".join(agree) + ", which supports this."
        return text + (f" Evidence: {f.n_frames} frame(s), statistics only (no language model);"
                       " confirm on real images that contain the class without this attribute.")
    if f.keywords_other:
        return ("**Possibly biased, weak evidence.** DEXTER's prompts settled on "
                + ", ".join(f"\"{k.keyword}\"" for k in f.keywords_other[:4])
                + f" rather than the class name, but no caption word is over-represented in the {f.n_frames} "
                "frame(s). More frames (more DEXTER steps or runs) would make this testable.")
    return ("**No evidence of bias.** Neither the keywords nor the captions point to anything other than the class "
            f"itself ({f.n_frames} frame(s)).")
