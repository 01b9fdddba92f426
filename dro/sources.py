"""Where training inputs come from, by sample index: images (in memory or files) or cached features.

The trainer asks a source for batches of given indices and never touches a dataset itself, so the same
loop trains a whole classifier on images and a last layer on cached penultimate features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from dro.data import GroupImageDataset


class InputSource(Protocol):
    def __len__(self) -> int: ...

    def iterate(self, order: np.ndarray, batch_size: int, device: torch.device | str
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(indices, inputs)`` batches in ``order``."""
        ...

    def fingerprint(self) -> str:
        """Changes when the inputs change (so a stale checkpoint is never resumed)."""
        ...


class TensorSource:
    """Everything already in memory: uint8 N x 3 x H x W images (scaled to [0,1] per batch) or float
    features. Fast path for the synthetic world and for cached features."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    @classmethod
    def from_pixels(cls, pixels: np.ndarray) -> TensorSource:
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"expected uint8 N x H x W x 3 pixels, got {pixels.dtype} {pixels.shape}")
        return cls(torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).contiguous())

    def __len__(self) -> int:
        return len(self.data)

    def iterate(self, order, batch_size, device):
        for start in range(0, len(order), batch_size):
            idx = np.asarray(order[start:start + batch_size])
            x = self.data[torch.from_numpy(idx)].to(device)
            yield idx, (x.float().div_(255.0) if x.dtype == torch.uint8 else x.float())

    def fingerprint(self) -> str:
        return hashlib.sha256(self.data.contiguous().numpy().tobytes()).hexdigest()[:16]


def load_square(im: Image.Image, size: int, dataset: str) -> torch.Tensor:
    """uint8 3 x size x size, with the evaluation-time geometry of the group-DRO code (no augmentation),
    as the dataset's registry entry says (``dro.data.registry``): Waterbirds resize to 256/224 x size then
    centre crop; CelebA (and folder datasets) centre crop to the short side then resize; anything else a
    plain resize."""
    from dro.data.registry import KINDS

    geometry = KINDS[dataset].geometry if dataset in KINDS else "resize"
    if geometry == "waterbirds":
        big = int(size * 256.0 / 224.0)
        im = im.resize((big, big), resample=Image.BILINEAR)
        left = (big - size) // 2
        im = im.crop((left, left, left + size, left + size))
    else:
        if geometry == "centre_square":
            w, h = im.size
            m = min(w, h)
            left, top = (w - m) // 2, (h - m) // 2
            im = im.crop((left, top, left + m, top + m))
        im = im.resize((size, size), resample=Image.BILINEAR)
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


class _Resized(torch.utils.data.Dataset):
    def __init__(self, dataset: GroupImageDataset, order: np.ndarray, size: int) -> None:
        self.dataset, self.order, self.size = dataset, order, size

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_square(self.dataset.image(int(self.order[i])), self.size, self.dataset.info.name)


class FileSource:
    """Images read from files by a DataLoader (workers), made ``image_size`` squares by
    :func:`load_square` (no augmentation, as in the group-DRO setups), returned in [0,1]."""

    def __init__(self, dataset: GroupImageDataset, image_size: int, num_workers: int = 0) -> None:
        if dataset.files is None:
            raise ValueError("FileSource needs a file-backed dataset")
        self.dataset, self.image_size, self.num_workers = dataset, image_size, num_workers

    def __len__(self) -> int:
        return len(self.dataset)

    def iterate(self, order, batch_size, device):
        order = np.asarray(order)
        loader = torch.utils.data.DataLoader(
            _Resized(self.dataset, order, self.image_size), batch_size=batch_size, shuffle=False,
            num_workers=self.num_workers, pin_memory=str(device).startswith("cuda"),
        )
        for b, x in enumerate(loader):
            idx = order[b * batch_size:(b + 1) * batch_size]
            yield idx, x.to(device, non_blocking=True).float().div_(255.0)

    def fingerprint(self) -> str:
        """Paths, sizes and modification times of the files (a replaced image changes it; re-hashing
        every byte of 200k CelebA images per run would cost minutes)."""
        h = hashlib.sha256(f"{self.image_size}:{self.dataset.info.name}".encode())
        for f in self.dataset.files:
            try:
                st = f.stat()
                h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{f}:missing".encode())
        return h.hexdigest()[:16]


def image_source(dataset: GroupImageDataset, image_size: int, num_workers: int = 0) -> InputSource:
    """The fast in-memory path when the dataset has pixels, else file loading."""
    if dataset.pixels is not None:
        return TensorSource.from_pixels(dataset.pixels)
    return FileSource(dataset, image_size, num_workers)


@torch.no_grad()
def predict(module: torch.nn.Module, source: InputSource, device: torch.device | str,
            batch_size: int = 512) -> np.ndarray:
    """Argmax predictions of ``module`` over the whole source (eval mode, restored afterwards)."""
    was_training = module.training
    module.eval()
    out = np.empty(len(source), dtype=np.int64)
    for idx, x in source.iterate(np.arange(len(source)), batch_size, device):
        out[idx] = module(x).argmax(1).cpu().numpy()
    module.train(was_training)
    return out
