"""The trainer's settings: the one schema of a training run (torch-free, so the params schema reads it).

``stages/params`` takes its defaults for the ``dro`` section from here, and the stages build a
:class:`TrainConfig` from the validated sections by field name (:func:`train_config`), never field by field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

# The settings only group DRO reads; an ERM run's identity leaves them out.
DRO_SETTINGS = ("eta", "adjustment", "normalize_loss", "balanced_sampling")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (docs/METHOD.md section 4 for the DRO part)."""

    method: Literal["erm", "group_dro"]
    epochs: int
    batch_size: int
    lr: float
    seed: int
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    eta: float = 0.01
    adjustment: float = 0.0
    normalize_loss: bool = False
    balanced_sampling: bool = True
    eval_batch_size: int = 512
    # How an epoch draws the training set: ``default`` = group-balanced for group DRO (when
    # ``balanced_sampling``), a permutation otherwise; ``group_balanced`` = every training group equally
    # likely per draw whatever the loss (upsampling); ``repeat`` = a permutation of the set in which
    # sample i occurs ``weights[i]`` times (JTT's upsampled error set). ``reweight``: the ERM loss is the
    # mean of ``weights[i] * loss_i`` (inverse group frequencies). See docs/METHOD.md section 9.
    sampler: Literal["default", "group_balanced", "repeat"] = "default"
    reweight: bool = False
    keep: Literal["best", "last"] = "best"  # last: the final epoch's weights (JTT's identification model)

    def identity(self) -> dict:
        """The settings that change what a run learns: every field except the evaluation batch size and,
        for ERM, the group-DRO settings (changing ``dro.eta`` must not throw away an ERM checkpoint)."""
        skip = {"eval_batch_size", *(DRO_SETTINGS if self.method == "erm" else ())}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def __post_init__(self) -> None:
        if self.method not in ("erm", "group_dro"):
            raise ValueError(f"method must be 'erm' or 'group_dro', got {self.method!r}")
        if self.sampler not in ("default", "group_balanced", "repeat"):
            raise ValueError(f"sampler must be 'default', 'group_balanced' or 'repeat', got {self.sampler!r}")
        if self.reweight and self.method != "erm":
            raise ValueError("reweight applies to the ERM loss only")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


def train_config(*sources: Any, **explicit: Any) -> TrainConfig:
    """A :class:`TrainConfig` from the fields of ``sources`` (params sections or mappings; later ones win,
    keys that are not TrainConfig fields are ignored), then ``explicit``."""
    names = {f.name for f in fields(TrainConfig)}
    values: dict[str, Any] = {}
    for src in sources:
        if src is None:
            continue
        data = src.model_dump() if hasattr(src, "model_dump") else dict(src)
        values.update({k: v for k, v in data.items() if k in names})
    values.update(explicit)
    return TrainConfig(**values)


def default(name: str) -> Any:
    """The library default of one TrainConfig field (for the params schema)."""
    return next(f.default for f in fields(TrainConfig) if f.name == name)


__all__ = ["DRO_SETTINGS", "TrainConfig", "default", "train_config"]
