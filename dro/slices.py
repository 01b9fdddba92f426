"""CLIP zero-shot pseudo-group labelling (docs/METHOD.md section 3, the B2T protocol DEXTER follows).

A text prototype of a phrase (or of a set of phrases) is the normalised mean of the normalised CLIP
text embeddings of ``template(class_template(phrase))`` over all templates and class templates.

With alternatives (what the reasoning stage verified: per attribute ``a`` of class y, the phrases it
competes with, e.g. water -> land, snow, sand), an image CARRIES ``a`` iff ``softmax(v . t / T)`` over
the prototypes of ``{a} + alternatives[a]`` picks ``a``. Then:

- a biased class (attributes A_y non-empty): bias-CONFLICTING iff the image carries no a in A_y;
- an unbiased class (verdict no_evidence, no attributes): bias-CONFLICTING iff the image carries an
  attribute of ANOTHER class (a cross on water, when water is circle's shortcut).

Without alternatives (reasoning output that has none), B2T's rule: per class c a prototype ``t_c`` of all
its attributes, each image compared with every class prototype, argmax = y -> bias-ALIGNED, otherwise
bias-CONFLICTING. No threshold either way. Pseudo-group = ``2 * y + conflicting``.

CLIP is loaded with ``CLIPModel`` / ``CLIPProcessor.from_pretrained`` (hub id or directory, the same
path). Image embeddings are computed once, batched, and cached on disk, keyed by model and dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dro.data import GroupImageDataset
from dro.templates import compose

TextEncoder = Callable[[list[str]], torch.Tensor]


class LabellingError(RuntimeError):
    """Slice labelling cannot run (no attributes for a class, CLIP missing, ...)."""


# ---------------------------------------------------------------------------------------------
# CLIP
# ---------------------------------------------------------------------------------------------


class ClipEncoder:
    """A CLIP model and its processor: texts and images -> L2-normalised embeddings."""

    def __init__(self, model, processor, name: str, device: torch.device | str = "cpu") -> None:
        self.model, self.processor, self.name, self.device = model, processor, name, torch.device(device)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> ClipEncoder:
        from transformers import CLIPModel, CLIPProcessor

        try:
            model = CLIPModel.from_pretrained(name_or_path, dtype=dtype).to(device).eval()
            processor = CLIPProcessor.from_pretrained(name_or_path)
        except OSError as e:
            raise LabellingError(f"cannot load CLIP {name_or_path!r} (hub id or directory with config, "
                                 f"weights and processor files): {e}") from e
        return cls(model, processor, _model_key(name_or_path), device)

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        out = []
        for s in range(0, len(texts), batch_size):
            tok = self.processor.tokenizer(texts[s:s + batch_size], padding=True, truncation=True,
                                           max_length=77, return_tensors="pt").to(self.device)
            out.append(self.model.get_text_features(**tok).pooler_output.float())
        return _normalise(torch.cat(out)).cpu()

    @torch.no_grad()
    def encode_images(self, dataset: GroupImageDataset, batch_size: int = 256, num_workers: int = 0,
                      progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Batched; file-backed datasets are decoded by ``num_workers`` DataLoader workers."""
        loader = torch.utils.data.DataLoader(_PilImages(dataset), batch_size=batch_size, shuffle=False,
                                             num_workers=num_workers, collate_fn=list)
        out, done = [], 0
        for images in loader:
            pix = self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
            pix = pix.to(self.device, self.model.dtype)
            out.append(self.model.get_image_features(pixel_values=pix).pooler_output.float())
            done += len(images)
            if progress:
                progress(done, len(dataset))
        return _normalise(torch.cat(out)).cpu()


class _PilImages(torch.utils.data.Dataset):
    def __init__(self, dataset: GroupImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset.image(i)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def _model_key(name_or_path: str) -> str:
    """A hub id as is; a directory by its path and the sizes + mtimes of its files (retrained -> new key)."""
    p = Path(name_or_path)
    if not p.is_dir():
        return name_or_path
    h = hashlib.sha256(str(p.resolve()).encode())
    for f in sorted(p.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return f"{p.name}-{h.hexdigest()[:12]}"


def dataset_key(dataset: GroupImageDataset) -> str:
    """Identity of a split's images (pixels, or file paths)."""
    h = hashlib.sha256(f"{dataset.info.name}:{dataset.split}:{len(dataset)}".encode())
    if dataset.pixels is not None:
        h.update(np.ascontiguousarray(dataset.pixels).tobytes())
    else:
        for f in dataset.files:
            h.update(str(f).encode())
    return h.hexdigest()[:16]


def cached_image_embeddings(encoder: ClipEncoder, dataset: GroupImageDataset, cache_dir: Path | str,
                            batch_size: int = 256, log: Callable[[str], None] = print,
                            num_workers: int = 0) -> torch.Tensor:
    """Image embeddings of a split, computed once and cached as safetensors (keyed by model + dataset)."""
    from safetensors.torch import load_file, save

    from dro.io import atomic_writer
    from dro.progress import progress_bar

    key = hashlib.sha256(f"{encoder.name}|{dataset_key(dataset)}".encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{dataset.info.name}-{dataset.split}-{key}.safetensors"
    if path.exists():
        emb = load_file(path)["embeddings"]
        if len(emb) == len(dataset):
            log(f"image embeddings from cache {path}")
            return emb
    log(f"embedding {len(dataset)} {dataset.split} images with CLIP {encoder.name}")
    with progress_bar(desc=f"CLIP {dataset.split} images", total=len(dataset), unit="img") as bar:
        emb = encoder.encode_images(dataset, batch_size, num_workers=num_workers,
                                    progress=lambda done, _total: bar.update(done - bar.n))
    with atomic_writer(path, "wb") as f:
        f.write(save({"embeddings": emb.contiguous()}))
    return emb


# ---------------------------------------------------------------------------------------------
# Prototypes and assignment (pure functions of embeddings)
# ---------------------------------------------------------------------------------------------


def class_prototypes(
    encode_text: TextEncoder,
    keywords: Sequence[Sequence[str]],
    templates: Sequence[str],
    class_templates: Sequence[str],
) -> torch.Tensor:
    """C x D prototypes: per class, the normalised mean of the normalised embeddings of every
    ``template(class_template(keyword))`` over templates, class templates and that class's keywords."""
    protos = []
    for c, words in enumerate(keywords):
        if not words:
            raise LabellingError(f"class {c} has no slice keywords")
        texts = [t for w in words for t in compose(w, list(templates), list(class_templates))]
        emb = _normalise(encode_text(texts).float())
        protos.append(_normalise(emb.mean(0)))
    return torch.stack(protos)


@dataclass(frozen=True)
class Assignment:
    conflicting: np.ndarray  # bool per image
    p_aligned: np.ndarray  # CLIP's probability behind the "aligned" decision, per image
    pseudo_groups: np.ndarray  # 2 * y + conflicting
    probs: np.ndarray | None = None  # N x C softmax(v . t / T) over class prototypes (B2T rule only)


def assign_slices(image_emb: torch.Tensor, y: np.ndarray, prototypes: torch.Tensor,
                  temperature: float = 0.02) -> Assignment:
    """B2T: aligned iff the argmax of ``softmax(v . t / T)`` over class prototypes is the image's own class."""
    y = np.asarray(y, dtype=np.int64)
    if len(image_emb) != len(y):
        raise ValueError(f"{len(image_emb)} embeddings but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= len(prototypes)):
        raise ValueError(f"labels must lie in [0, {len(prototypes)})")
    probs = _softmax(image_emb, prototypes, temperature)
    conflicting = probs.argmax(1) != y
    return Assignment(conflicting, probs[np.arange(len(y)), y], pseudo_groups(y, conflicting), probs)


def _softmax(image_emb: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> np.ndarray:
    logits = _normalise(image_emb.float()) @ prototypes.float().t() / temperature
    return torch.softmax(logits, dim=1).numpy()


@dataclass(frozen=True)
class ClassSlices:
    """What labelling is told about one class: its attributes (empty: no evidence of bias) and, per
    attribute, the alternative phrases CLIP must prefer it over (missing: B2T's rule for the class)."""

    class_name: str
    attributes: tuple[str, ...]
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    verdict: str | None = None  # "biased" | "no_evidence"; None: reasoning output without a verdict

    @property
    def biased(self) -> bool:
        return bool(self.attributes)

    @property
    def has_alternatives(self) -> bool:
        return self.biased and all(self.alternatives.get(a) for a in self.attributes)


def assign_with_alternatives(
    image_emb: torch.Tensor,
    y: np.ndarray,
    slices: Sequence[ClassSlices],
    prototype: Callable[[Sequence[str]], torch.Tensor],
    temperature: float = 0.02,
    log: Callable[[str], None] = print,
) -> Assignment:
    """The labelling rule of the module docstring. ``prototype(phrases)`` -> one normalised D-vector."""
    y = np.asarray(y, dtype=np.int64)
    if len(image_emb) != len(y):
        raise ValueError(f"{len(image_emb)} embeddings but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= len(slices)):
        raise ValueError(f"labels must lie in [0, {len(slices)})")
    conflicting = np.zeros(len(y), dtype=bool)
    p_aligned = np.ones(len(y), dtype=np.float64)
    memo: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def carries(a: str, alternatives: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(whether each image carries ``a`` rather than an alternative, P(a) over them)."""
        key = (a, *alternatives)
        if key not in memo:
            probs = _softmax(image_emb, torch.stack([prototype([p]) for p in key]), temperature)
            memo[key] = probs.argmax(1) == 0, probs[:, 0]
        return memo[key]

    biased = [c for c, s in enumerate(slices) if s.biased]
    b2t = None
    if any(s.biased and not s.has_alternatives for s in slices):
        b2t = _softmax(image_emb, torch.stack([prototype(slices[c].attributes) for c in biased]), temperature)
    for c, s in enumerate(slices):
        m = y == c
        if not m.any():
            continue
        if s.has_alternatives:
            found = [carries(a, s.alternatives[a]) for a in s.attributes]
            conflicting[m] = ~np.any([wins[m] for wins, _ in found], axis=0)
            p_aligned[m] = np.max([p[m] for _, p in found], axis=0)
        elif s.biased:
            own = biased.index(c)
            conflicting[m] = b2t[m].argmax(1) != own
            p_aligned[m] = b2t[m][:, own]
        else:
            others = [(o, a) for o in slices if o is not s for a in o.attributes]
            usable = [(o, a) for o, a in others if o.alternatives.get(a)]
            if len(usable) < len(others):
                missing = sorted({a for o, a in others if not o.alternatives.get(a)})
                log(f"WARNING {s.class_name} shows no bias, and the other classes' attributes {missing} have no "
                    "alternatives, so its images cannot be checked for them (they count as aligned)")
            if usable:
                found = [carries(a, o.alternatives[a]) for o, a in usable]
                conflicting[m] = np.any([wins[m] for wins, _ in found], axis=0)
                p_aligned[m] = 1.0 - np.max([p[m] for _, p in found], axis=0)
    return Assignment(conflicting, p_aligned, pseudo_groups(y, conflicting))


def pseudo_groups(y: np.ndarray, conflicting: np.ndarray) -> np.ndarray:
    return 2 * np.asarray(y, dtype=np.int64) + np.asarray(conflicting, dtype=np.int64)


def pseudo_group_names(class_names: Sequence[str]) -> list[str]:
    return [f"{c}|{s}" for c in class_names for s in ("aligned", "conflicting")]


# ---------------------------------------------------------------------------------------------
# Quality where true groups exist
# ---------------------------------------------------------------------------------------------


def aligned_values_by_lift(train_y: np.ndarray, train_a: np.ndarray, num_classes: int,
                           num_values: int) -> tuple[tuple[int, ...], ...]:
    """Per class, the attribute values that are bias-ALIGNED: over-represented in the class in TRAIN,
    ``P(a | y) > P(a)`` (lift above 1). Unlike the class's most frequent value, this names CelebA's
    non-blond class aligned with "male" (male is more common among non-blond than overall), not with
    "female" (the majority value of every class)."""
    known = train_a >= 0
    y, a = train_y[known], train_a[known]
    base = np.bincount(a, minlength=num_values) / max(len(a), 1)
    out = []
    for c in range(num_classes):
        in_class = a[y == c]
        if not len(in_class):
            out.append(())
            continue
        cond = np.bincount(in_class, minlength=num_values) / len(in_class)
        out.append(tuple(int(v) for v in np.flatnonzero(cond > base + 1e-12)))
    return tuple(out)


def true_conflicting(y: np.ndarray, a: np.ndarray, aligned: Sequence[Sequence[int]]) -> np.ndarray:
    """True bias-conflicting membership: attribute known, and not one of the class's aligned values. A
    class with no aligned value (attribute independent of it) has no conflicting image."""
    y, a = np.asarray(y), np.asarray(a)
    out = np.zeros(len(y), dtype=bool)
    for c, values in enumerate(aligned):
        m = (y == c) & (a >= 0)
        if values:
            out[m] = ~np.isin(a[m], list(values))
    return out


def labelling_quality(pred_conflicting: np.ndarray, true_conflict: np.ndarray, y: np.ndarray,
                      known: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy of aligned/conflicting, the F1 of the bias-conflicting slice pooled over all images (as
    B2T reports it) and per class (images with a known attribute only)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    known = np.asarray(known, dtype=bool)
    p, t, yk = pred_conflicting[known], true_conflict[known], y[known]
    out: dict = {"num_images": int(known.sum()), "accuracy": float((p == t).mean()) if len(p) else None,
                 "f1_conflicting_pooled": float(f1_score(t, p, zero_division=0)) if len(p) else None,
                 "per_class": {}}
    for c, name in enumerate(class_names):
        m = yk == c
        out["per_class"][name] = {
            "f1_conflicting": float(f1_score(t[m], p[m], zero_division=0)) if m.any() else None,
            "precision_conflicting": float(precision_score(t[m], p[m], zero_division=0)) if m.any() else None,
            "recall_conflicting": float(recall_score(t[m], p[m], zero_division=0)) if m.any() else None,
            "true_conflicting": int(t[m].sum()), "pred_conflicting": int(p[m].sum()),
        }
    return out


def read_attributes(reasoning_dir: Path | str, class_names: Sequence[str]) -> list[ClassSlices]:
    """Per class, what ``<reasoning_dir>/<ccc>_<name>/attributes.json`` says: ``attributes`` and, where
    the reasoning stage wrote them, ``verdict`` and ``alternatives``. Without a verdict every class must
    have attributes (older reasoning output); with ``verdict: no_evidence`` the class has none."""
    reasoning_dir = Path(reasoning_dir)
    out = []
    for c, name in enumerate(class_names):
        matches = sorted(reasoning_dir.glob(f"{c:03d}_*/attributes.json"))
        if not matches:
            raise LabellingError(f"no attributes for class {c} ({name}): expected "
                                 f"{reasoning_dir}/{c:03d}_<name>/attributes.json (run the reason stage)")
        path = matches[0]
        d = json.loads(path.read_text())
        words = _phrases(d.get("attributes", []))
        verdict = d.get("verdict")
        if verdict not in (None, "biased", "no_evidence"):
            raise LabellingError(f"{path}: verdict must be 'biased' or 'no_evidence', got {verdict!r}")
        if verdict == "no_evidence" and words:
            raise LabellingError(f"{path}: verdict is no_evidence but 'attributes' is not empty")
        if verdict != "no_evidence" and not words:
            raise LabellingError(f"{path}: 'attributes' is empty")
        raw_alt = d.get("alternatives") or {}
        if not isinstance(raw_alt, dict):
            raise LabellingError(f"{path}: 'alternatives' must map each attribute to a list of phrases")
        alternatives = {}
        for a in words:
            alt = [p for p in _phrases(raw_alt.get(a, [])) if p != a]
            if alt:
                alternatives[a] = tuple(dict.fromkeys(alt))
        out.append(ClassSlices(name, tuple(words), alternatives, verdict))
    return out


def _phrases(values) -> list[str]:
    return [str(w).strip() for w in values if str(w).strip()]
