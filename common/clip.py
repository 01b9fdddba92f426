"""The one CLIP encoder: texts and images -> L2-normalised embeddings, and a disk cache of image embeddings.

CLIP is loaded with ``CLIPModel`` / ``CLIPProcessor.from_pretrained`` (hub id or directory, the same path).
Image embeddings are computed once, batched, and cached on disk as safetensors, keyed by the model (a
directory by its files' sizes and modification times, so a retrained CLIP is a new key) and by the split's
images (pixels or file paths).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from common.errors import UserInputError
from common.io import atomic_writer
from common.progress import progress_bar

_log = logging.getLogger(__name__)


class ClipError(UserInputError, RuntimeError):
    """CLIP cannot be loaded (not a hub id or a directory with config, weights and processor files)."""


class ImageDataset(Protocol):
    """What the encoder needs of a split: its images in order and what identifies them."""

    info: Any  # has ``.name``
    split: str
    pixels: np.ndarray | None
    files: Any

    def __len__(self) -> int: ...

    def image(self, i: int) -> Any: ...




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
        except (OSError, ValueError) as e:
            raise ClipError(f"cannot load CLIP {name_or_path!r} (hub id or directory with config, "
                                 f"weights and processor files): {e}") from e
        return cls(model, processor, _model_key(name_or_path), device)

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        out = []
        for s in range(0, len(texts), batch_size):
            tok = self.processor.tokenizer(texts[s:s + batch_size], padding=True, truncation=True,
                                           max_length=77, return_tensors="pt").to(self.device)
            out.append(self.model.get_text_features(**tok).pooler_output.float())
        return normalise(torch.cat(out)).cpu()

    @torch.no_grad()
    def encode_images(self, dataset: ImageDataset, batch_size: int = 256, num_workers: int = 0,
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
        return normalise(torch.cat(out)).cpu()

    @torch.no_grad()
    def encode_pixels(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(N, 3, H, W) tensors in [0, 1] (generated images, never written to disk) -> embeddings."""
        out = []
        for s in range(0, len(images), batch_size):
            batch = list(images[s:s + batch_size].detach().float().clamp(0, 1).cpu())
            pix = self.processor.image_processor(images=batch, do_rescale=False, return_tensors="pt")["pixel_values"]
            out.append(self.model.get_image_features(pixel_values=pix.to(self.device, self.model.dtype))
                       .pooler_output.float())
        return normalise(torch.cat(out)).cpu()


class _PilImages(torch.utils.data.Dataset):
    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset.image(i)


def normalise(x: torch.Tensor) -> torch.Tensor:
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


def dataset_key(dataset: ImageDataset) -> str:
    """Identity of a split's images (pixels, or file paths)."""
    h = hashlib.sha256(f"{dataset.info.name}:{dataset.split}:{len(dataset)}".encode())
    if dataset.pixels is not None:
        h.update(np.ascontiguousarray(dataset.pixels).tobytes())
    else:
        for f in dataset.files:
            h.update(str(f).encode())
    return h.hexdigest()[:16]


def cached_image_embeddings(encoder: ClipEncoder, dataset: ImageDataset, cache_dir: Path | str,
                            batch_size: int = 256, log: Callable[[str], None] = _log.info,
                            num_workers: int = 0) -> torch.Tensor:
    """Image embeddings of a split, computed once and cached as safetensors (keyed by model + dataset)."""
    from safetensors.torch import load_file, save

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


__all__ = ["ClipEncoder", "ClipError", "ImageDataset", "cached_image_embeddings", "dataset_key", "normalise"]
