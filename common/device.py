"""One device and dtype policy for every stage, the CLI and both libraries.

``auto`` picks CUDA when present, else the CPU. A device that is not a device, or one this machine lacks,
is a one-line :class:`DeviceError` before any model is loaded. Compute dtype ``auto``: float16 on CUDA
(what Stable Diffusion and CLIP were released in), float32 elsewhere (CPU half precision is slow and
inexact).
"""

from __future__ import annotations

from common.errors import UserInputError

DTYPE_NAMES = ("auto", "fp32", "float32", "fp16", "float16", "half", "bf16", "bfloat16")


class DeviceError(UserInputError, ValueError):
    """A device or dtype name that is not one, or hardware this machine does not have."""


def resolve_device(spec=None):
    """``auto``/None -> cuda if available else cpu; anything else is passed to torch and checked."""
    import torch

    if spec is None or str(spec) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(spec, torch.device):
        device = spec
    else:
        try:
            device = torch.device(spec)
        except (RuntimeError, TypeError, ValueError):
            raise DeviceError(
                f"device: {spec!r} is not a device name (use 'auto', 'cpu', 'cuda' or 'cuda:<index>')") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device: {spec!r} asked for, but no CUDA device is available (use 'auto' or 'cpu')")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device: {spec!r} asked for, but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device: {spec!r} asked for, but MPS is not available (use 'auto' or 'cpu')")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device: {spec!r}: use 'cpu', 'cuda' or 'mps'")
    return device


def resolve_dtype(dtype, device):
    """A dtype name (or torch dtype) -> torch dtype. ``auto``: bf16 on CUDA GPUs that have it (fp16's range
    overflows in long backward passes; bf16's does not), else fp16 on CUDA, fp32 elsewhere."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = (dtype or "auto").lower()
    if name == "auto":
        if torch.device(device).type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16
    table = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise DeviceError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_NAMES)}")
    return table[name]


def compute_dtype(device):
    """The ``auto`` dtype of ``device``."""
    return resolve_dtype("auto", device)


__all__ = ["DTYPE_NAMES", "DeviceError", "compute_dtype", "resolve_device", "resolve_dtype"]
