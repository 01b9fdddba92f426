"""Reading classifier checkpoints and naming torchvision models: shared by the DEXTER CLI (``dexter``) and the
bring-your-own-classifier import (``dro``), which may not import each other."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from common.classifier import ModelError


class CheckpointError(ModelError, ValueError):
    """A checkpoint that cannot be read, or a torchvision model name that does not exist: a classifier that
    cannot be loaded (:class:`common.classifier.ModelError`), so one ``except`` covers both."""


def check_torchvision_name(name: str) -> None:
    """Raise :class:`CheckpointError` unless ``name`` is a torchvision classification model."""
    from torchvision import models

    names = models.list_models(module=models)
    if name not in names:
        close = [n for n in names if name.lower()[:4] in n][:8]
        raise CheckpointError(f"unknown classifier {name!r}; torchvision offers e.g. {close or names[:8]}")


def _resave_hint(path: Path) -> str:
    return (f"python -c \"import torch; c = torch.load('{path}', map_location='cpu', weights_only=False); "
            f"torch.save(c.get('model', c), '{path.with_suffix('')}_weights.pt')\"")


def _torch_load(path: Path, trust: bool) -> Any:
    """``torch.load`` with ``weights_only=True``; a refusal becomes a one-line error that says what to do.

    The robust ResNet-50 of the original code was saved by the robustness library with ``pickle_module=dill``
    next to optimiser and schedule state: such a file may hold Python objects that the safe loader refuses.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower() and "weights_only" not in str(e):
            raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e)[:200]}") from None
        if not trust:
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = found.group(1) if found else "objects other than tensors"
            raise CheckpointError(
                f"checkpoint {path} holds pickled Python objects ({what}) that the safe loader "
                f"(torch.load weights_only=True) refuses; if you trust the file, pass --trust-checkpoint "
                f"(trust_checkpoint=True), or re-save its weights once: {_resave_hint(path)}"
                + (" (pip install dill first)" if what.startswith("dill") else "")
            ) from None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e)[:200]}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise CheckpointError(f"checkpoint {path} was pickled with the module {e.name!r}; install it "
                              f"(pip install {e.name}) to read the file") from None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e)[:200]}") from None


def read_state_dict(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict with wrapper keys and ``module.``/``module.model.``/``model.`` prefixes removed.

    The robustness-library layout (robust ResNet-50) keeps the network under ``module.model.`` (or
    ``model.`` when saved without DataParallel) beside ``attacker.model.`` (a copy) and ``normalizer.``
    (ImageNet mean/std, applied by our preprocessing instead): only the network's keys are kept.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = _torch_load(path, trust)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"checkpoint {path} holds no state dict")
    if any(k.startswith("module.model.") for k in state):  # robustness-library format (robust ResNet-50)
        state = {k[len("module.model."):]: v for k, v in state.items() if k.startswith("module.model.")}
    elif any(k.startswith("model.") for k in state):  # the same, saved without DataParallel
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    elif all(k.startswith("module.") for k in state):  # DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


__all__ = ["CheckpointError", "check_torchvision_name", "read_state_dict"]
