"""The ``labelling`` and ``dro`` sections (docs/METHOD.md sections 3-5). Owned by dro."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from dro.config import default
from stages.params.base import Section

# The default rows: every registered method that is not an ablation (the synthetic world adds those
# through synthetic.ablations). Names are checked against the registry, dro.methods.METHODS.
DEFAULT_METHODS = ["erm", "groupdro_oracle", "jtt", "dfr_oracle", "dro_b2t", "dro_dexter", "dfr_dexter",
                   "rw_dexter", "us_dexter"]


class LabellingSection(Section):
    """CLIP zero-shot slice labelling. ``templates``: ``auto`` (world templates for the synthetic world,
    the 80 CLIP ImageNet templates otherwise), ``imagenet``, ``world``, or an explicit list; each must
    contain one ``{}``. ``class_templates``: None = the dataset's B2T class templates."""

    temperature: float = Field(0.02, gt=0)
    batch_size: int = Field(256, ge=1)
    templates: Literal["auto", "imagenet", "world"] | list[str] = "auto"
    class_templates: list[str] | None = None

    @field_validator("templates", "class_templates")
    @classmethod
    def _one_slot(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("must not be empty")
            bad = [t for t in v if t.count("{}") != 1]
            if bad:
                raise ValueError(f"each template needs exactly one '{{}}': {bad[0]!r}")
        return v


class LastLayerSettings(Section):
    """Training of the head alone over cached features (``dro.mode: last_layer``)."""

    epochs: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam"] = "adam"
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class DroGridSettings(Section):
    """Group DRO's selection grid (tuned rows): generalisation adjustment C x step size eta. The setting
    ``dro.adjustment`` / ``dro.eta`` is always tried first; ties in validation score keep it."""

    adjustment: list[float] = Field(default_factory=lambda: [0.0, 2.0])
    eta: list[float] = Field(default_factory=lambda: [0.01, 0.1])
    # where the grid is searched; elsewhere the rows train the one setting dro.adjustment / dro.eta (the
    # synthetic world is left out by default: 4 points x 5 group-DRO rows break the default run's budget)
    datasets: list[Literal["synthetic", "waterbirds", "celeba"]] = Field(
        default_factory=lambda: ["waterbirds", "celeba"])

    @field_validator("adjustment", "eta")
    @classmethod
    def _values(cls, v, info):
        if not v:
            raise ValueError("must name at least one value")
        if info.field_name == "eta" and any(x <= 0 for x in v):
            raise ValueError("step sizes must be > 0")
        if any(x < 0 for x in v):
            raise ValueError("must be >= 0")
        return v


class JttSettings(Section):
    """JTT: ERM identification model for ``epochs`` epochs, then its training errors upweighted x ``lambda_up``."""

    epochs: int = Field(1, ge=1)
    lambda_up: int = Field(20, ge=1)


class DfrSettings(Section):
    """DFR: L1 logistic-regression head on a group-balanced half of validation, C chosen on the other half."""

    c_grid: list[float] = Field(default_factory=lambda: [1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01])
    n_fits: int = Field(10, ge=1)

    @field_validator("c_grid")
    @classmethod
    def _positive(cls, v):
        if not v or any(c <= 0 for c in v):
            raise ValueError("must be a non-empty list of values > 0")
        return v


class DroSection(Section):
    """Group-DRO retraining; the loss settings' defaults are the trainer's (:mod:`dro.config`)."""

    eta: float = Field(default("eta"), gt=0)
    adjustment: float = Field(default("adjustment"), ge=0)
    normalize_loss: bool = default("normalize_loss")
    balanced_sampling: bool = default("balanced_sampling")
    mode: Literal["full", "last_layer"] = "full"
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    eval_batch_size: int = Field(default("eval_batch_size"), ge=1)  # the retraining runs' evaluation batch
    last_layer: LastLayerSettings = LastLayerSettings()
    grid: DroGridSettings = DroGridSettings()
    jtt: JttSettings = JttSettings()
    dfr: DfrSettings = DfrSettings()

    @field_validator("methods")
    @classmethod
    def _distinct(cls, v):
        return check_method_names(v)


def check_method_names(names: list[str]) -> list[str]:
    """A non-empty list of registered method names without repeats (``dro.methods``, ``synthetic.methods``)."""
    from dro.methods import get_method

    if not names or len(set(names)) != len(names):
        raise ValueError("methods must be a non-empty list without repeats")
    for name in names:
        get_method(name)  # unknown -> one line listing the known methods
    return names
