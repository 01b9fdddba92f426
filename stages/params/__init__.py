"""The typed schema of params.yaml, validated once at the edge of every stage.

Each stage calls :func:`load_params` first: an unknown key, a wrong type or an impossible value is
reported as ONE line naming the key (``params.yaml: dexter.stepz: unknown key``) before any model or
dataset is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from common.errors import UserInputError
from stages.params.base import Section
from stages.params.classifier import ClassifierSection
from stages.params.data import (
    CelebASection,
    FolderSection,
    ModelSet,
    SyntheticSection,
    TrainSettings,
    WaterbirdsSection,
)
from stages.params.dexter import DexterSection, merged_dexter
from stages.params.dro import DroSection, LabellingSection
from stages.params.reasoning import ReasoningSection
from stages.params.world import WorldSection

DatasetName = Literal["synthetic", "waterbirds", "celeba", "folder"]  # the kinds of dro.data.registry


class TorchrunSection(Section):
    """How ``processes > 1`` is launched: torchrun's own settings (``torchrun --help``). One machine:
    leave the defaults (``--standalone``). Several: ``nnodes`` machines, each running the stage with its
    ``node_rank``, meeting at ``rdzv_endpoint`` (host:port of node 0) under ``rdzv_id``."""

    nnodes: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0)
    rdzv_endpoint: str | None = None  # host:port; required when nnodes > 1
    rdzv_id: str = "dexter-dro"

    @model_validator(mode="after")
    def _check(self) -> TorchrunSection:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("rdzv_endpoint (host:port of the first node) is required when nnodes > 1")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes}")
        return self


class Params(Section):
    dataset: DatasetName = "synthetic"
    device: str = "auto"
    processes: int = Field(1, ge=1)  # per node: explain and retrain (full mode) run under torchrun when > 1
    torchrun: TorchrunSection = TorchrunSection()
    seed: int = 0
    seeds: Literal["auto"] | list[int] = "auto"  # auto: 3 seeds on real datasets, 1 on the synthetic world
    synthetic: SyntheticSection = SyntheticSection()
    waterbirds: WaterbirdsSection = WaterbirdsSection()
    celeba: CelebASection = CelebASection()
    folder: FolderSection = FolderSection()
    classifier: ClassifierSection = ClassifierSection()
    models: dict[str, ModelSet]
    world: WorldSection = WorldSection()
    dexter: DexterSection = DexterSection()
    reasoning: ReasoningSection = ReasoningSection()
    labelling: LabellingSection = LabellingSection()
    dro: DroSection = DroSection()

    @model_validator(mode="after")
    def _models_exist(self) -> Params:
        wanted = self.dataset_section.models
        if wanted not in self.models:
            raise ValueError(f"{self.dataset}.models names {wanted!r}, but models has only {sorted(self.models)}")
        if self.seeds != "auto" and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError("seeds must name at least one seed, without repeats")
        if self.dataset == "folder" and not self.folder.attribute_columns and "groupdro_oracle" in self.dro.methods:
            raise ValueError("dro.methods: groupdro_oracle trains on true groups, but folder.attribute_columns is "
                             "empty (no true attribute); drop it from dro.methods or name the attribute columns")
        try:
            self.dexter_settings  # noqa: B018  (validate the merged section now, not in a stage)
        except ValidationError as e:
            raise ValueError(f"{self.dataset}.dexter: {_first_error(e)}") from None
        return self

    @property
    def dexter_settings(self) -> DexterSection:
        """The ``dexter`` section with the chosen dataset's overrides applied: what DEXTER runs with."""
        return merged_dexter(self.dexter, self.dataset_section.dexter)

    @property
    def dataset_section(self) -> SyntheticSection | WaterbirdsSection | CelebASection | FolderSection:
        return getattr(self, self.dataset)

    @property
    def kind(self):
        """The dataset's entry in :mod:`dro.data.registry` (title, convention, templates, loader, world)."""
        from dro.data.registry import dataset_kind

        return dataset_kind(self.dataset)

    @property
    def is_world(self) -> bool:
        """The built-in synthetic world (world models, gates, vocabulary and ablation rows exist only there)."""
        return self.kind.world

    @property
    def model_set(self) -> ModelSet:
        return self.models[self.dataset_section.models]

    @property
    def train(self) -> TrainSettings:
        return self.dataset_section.train

    @property
    def retrain_seeds(self) -> list[int]:
        """The retraining seeds: ``seeds``, or for ``auto`` 3 on the real datasets (seed, seed+1, seed+2, as the
        field reports) and 1 on the synthetic world (the default run's time budget)."""
        if self.seeds != "auto":
            return list(self.seeds)
        return [self.seed] if self.dataset == "synthetic" else [self.seed, self.seed + 1, self.seed + 2]

    @property
    def methods(self) -> list[str]:
        """The retraining rows: ``dro.methods`` (on the synthetic world ``synthetic.methods`` unless null), plus
        the world's ablation rows."""
        if not self.is_world:
            return list(self.dro.methods)
        base = self.dro.methods if self.synthetic.methods is None else self.synthetic.methods
        return [*base, *self.synthetic.ablations]

    @property
    def world_root(self) -> Path:
        """The folder holding the world models' manifest (world.json): ``world.root``, or by default the
        folder above the synthetic world's CLIP (``models.<synthetic.models>.clip``)."""
        if self.world.root is not None:
            return Path(self.world.root)
        return Path(self.models[self.synthetic.models].clip).parent


class ParamsError(UserInputError, ValueError):
    """params.yaml is invalid; the message is one line that names the key."""


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found (run from the project root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    return parse_params(raw, source=str(path))


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: top level must be a mapping")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(f"{source}: {_first_error(e)}") from None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict | list):
            msg += f" (got {err['input']!r})"
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


__all__ = ["Params", "ParamsError", "TorchrunSection", "load_params", "parse_params", "TrainSettings", "ModelSet"]
