"""CLIP zero-shot pseudo-group labelling (METHOD.md section 3, the B2T protocol DEXTER follows).

Per class c, a text prototype ``t_c`` = normalised mean of the normalised CLIP text embeddings of
``template(class_template(keyword))`` over all templates, class templates and keywords of c. Each image
(label y, normalised embedding v) is compared with every class prototype: ``softmax(v . t / T)``,
T = 0.02, argmax. Argmax = y (closer to its own class's bias keywords) -> bias-ALIGNED; otherwise
(closer to the counterpart's, or for more than two classes to another class's) -> bias-CONFLICTING.
No threshold. Pseudo-group = ``2 * y + conflicting``.

CLIP is loaded with ``CLIPModel`` / ``CLIPProcessor.from_pretrained`` (hub id or directory, the same
path). Image embeddings are computed once, batched, and cached on disk, keyed by model and dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    probs: np.ndarray  # N x C softmax(v . t / T)
    pseudo_groups: np.ndarray  # 2 * y + conflicting


def assign_slices(image_emb: torch.Tensor, y: np.ndarray, prototypes: torch.Tensor,
                  temperature: float = 0.02) -> Assignment:
    """Aligned iff the argmax of ``softmax(v . t / T)`` over class prototypes is the image's own class."""
    y = np.asarray(y, dtype=np.int64)
    if len(image_emb) != len(y):
        raise ValueError(f"{len(image_emb)} embeddings but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= len(prototypes)):
        raise ValueError(f"labels must lie in [0, {len(prototypes)})")
    logits = _normalise(image_emb.float()) @ prototypes.float().t() / temperature
    probs = torch.softmax(logits, dim=1).numpy()
    conflicting = probs.argmax(1) != y
    return Assignment(conflicting, probs, pseudo_groups(y, conflicting))


def pseudo_groups(y: np.ndarray, conflicting: np.ndarray) -> np.ndarray:
    return 2 * np.asarray(y, dtype=np.int64) + np.asarray(conflicting, dtype=np.int64)


def pseudo_group_names(class_names: Sequence[str]) -> list[str]:
    return [f"{c}|{s}" for c in class_names for s in ("aligned", "conflicting")]


# ---------------------------------------------------------------------------------------------
# Quality where true groups exist
# ---------------------------------------------------------------------------------------------


def majority_attribute(train_y: np.ndarray, train_a: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class, the spurious-attribute value most frequent in TRAIN: the bias-aligned value."""
    out = np.full(num_classes, -1, dtype=np.int64)
    for c in range(num_classes):
        a = train_a[(train_y == c) & (train_a >= 0)]
        if len(a):
            out[c] = np.bincount(a).argmax()
    return out


def true_conflicting(y: np.ndarray, a: np.ndarray, majority: np.ndarray) -> np.ndarray:
    """True bias-conflicting membership: attribute known and not the class's majority value."""
    return (a >= 0) & (a != majority[y])


def labelling_quality(pred_conflicting: np.ndarray, true_conflict: np.ndarray, y: np.ndarray,
                      known: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy of aligned/conflicting, and per-class F1 of the bias-conflicting slice (images with a
    known attribute only)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    known = np.asarray(known, dtype=bool)
    p, t, yk = pred_conflicting[known], true_conflict[known], y[known]
    out: dict = {"num_images": int(known.sum()), "accuracy": float((p == t).mean()) if len(p) else None,
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


def read_attributes(reasoning_dir: Path | str, class_names: Sequence[str]) -> list[list[str]]:
    """Slice keywords per class from ``<reasoning_dir>/<ccc>_<name>/attributes.json``."""
    reasoning_dir = Path(reasoning_dir)
    out = []
    for c, name in enumerate(class_names):
        matches = sorted(reasoning_dir.glob(f"{c:03d}_*/attributes.json"))
        if not matches:
            raise LabellingError(f"no attributes for class {c} ({name}): expected "
                                 f"{reasoning_dir}/{c:03d}_<name>/attributes.json (run the reason stage)")
        d = json.loads(matches[0].read_text())
        words = [str(w).strip() for w in d.get("attributes", []) if str(w).strip()]
        if not words:
            raise LabellingError(f"{matches[0]}: 'attributes' is empty")
        out.append(words)
    return out
