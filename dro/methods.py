"""The method registry: every retraining row declares here what it trains and what it may see.

One :class:`Method` per table row (the SubpopBench way): how it trains (``kind``: the shared trainer,
JTT's two stages or DFR's last-layer fit), its loss, how it samples or weights the training set, and
which labels it may see: the training data, group labels in training (none / true / pseudo), group
labels for model selection on validation (none / true / pseudo), and what data its group discovery
used. The stages and the results table read only this registry: adding a row is one entry here
(docs/METHOD.md section 9 lists the formulas).

``pseudo_from`` names the labelling whose pseudo-groups a ``pseudo`` method uses (the file the label
stage writes, :func:`dro.pipeline.labels_file`): ``dro_dexter`` (DEXTER's keywords), ``dro_b2t``
(keywords from captions of the validation images ERM gets wrong), or an ablation's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Visible = Literal["none", "true", "pseudo"]


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # the table's row label
    kind: Literal["train", "jtt", "dfr"]  # shared trainer | ERM identification + upweighted retrain | last-layer fit
    loss: Literal["erm", "group_dro"]
    sampler: Literal["default", "group_balanced", "repeat"] = "default"  # see dro.train.TrainConfig.sampler
    reweight: bool = False  # ERM loss weighted by inverse (visible) group frequency
    train_groups: Visible = "none"  # group labels the loss, sampler, weights or DFR's balancing see
    selection_groups: Visible = "none"  # group labels of validation model selection (worst-group of these)
    pseudo_from: str | None = None  # whose pseudo-groups (labels file), when either of the above is "pseudo"
    training_data: str = "train images + class labels"
    discovery_data: str = "—"  # what group discovery looked at (the table's "data used for discovery")
    tuned: bool = False  # selected over the group-DRO grid (dro.grid: adjustment C x step size eta)
    is_audited_model: bool = False  # the row's run is the train_erm stage's model (full mode, seed `seed`)
    source: str = ""

    def __post_init__(self) -> None:
        uses_pseudo = "pseudo" in (self.train_groups, self.selection_groups)
        if uses_pseudo != (self.pseudo_from is not None):
            raise ValueError(f"method {self.name}: pseudo_from must be set exactly when it sees pseudo-groups")
        if self.loss == "group_dro" and self.train_groups == "none":
            raise ValueError(f"method {self.name}: group DRO needs training groups")

    @property
    def needs_pseudo(self) -> bool:
        return self.pseudo_from is not None


_DEXTER = "none (data-free: DEXTER's generated images)"
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("erm", "ERM", "train", "erm", is_audited_model=True, source="empirical risk minimisation"),
    Method("groupdro_oracle", "GroupDRO", "train", "group_dro", train_groups="true", selection_groups="true",
           discovery_data="— (true group labels)", tuned=True, source="Sagawa et al., ICLR 2020"),
    Method("jtt", "JTT", "jtt", "erm", sampler="repeat", selection_groups="true",
           discovery_data="train images ERM gets wrong", source="Liu et al., ICML 2021"),
    Method("dfr_oracle", "DFR", "dfr", "erm", train_groups="true", selection_groups="true",
           training_data="train images (backbone); val half (head)", discovery_data="— (true group labels)",
           source="Kirichenko et al., ICLR 2023"),
    Method("dro_b2t", "B2T + DRO", "train", "group_dro", train_groups="pseudo", selection_groups="pseudo",
           pseudo_from="dro_b2t", discovery_data="val images ERM gets wrong (captions)", tuned=True,
           source="Kim et al., CVPR 2024 (B2T keywords), Sagawa et al. 2020 (DRO)"),
    Method("dro_dexter", "DEXTER + DRO", "train", "group_dro", train_groups="pseudo", selection_groups="pseudo",
           pseudo_from="dro_dexter", discovery_data=_DEXTER, tuned=True, source="this pipeline"),
    Method("dfr_dexter", "DEXTER + DFR", "dfr", "erm", train_groups="pseudo", selection_groups="pseudo",
           pseudo_from="dro_dexter", training_data="train images (backbone); val half (head)",
           discovery_data=_DEXTER, source="DFR (Kirichenko et al. 2023) on DEXTER's pseudo-groups"),
    Method("rw_dexter", "DEXTER + reweighting", "train", "erm", reweight=True, train_groups="pseudo",
           selection_groups="pseudo", pseudo_from="dro_dexter", discovery_data=_DEXTER,
           source="inverse group-frequency loss weights (Idrissi et al. 2022, RWG)"),
    Method("us_dexter", "DEXTER + upsampling", "train", "erm", sampler="group_balanced", train_groups="pseudo",
           selection_groups="pseudo", pseudo_from="dro_dexter", discovery_data=_DEXTER,
           source="group-balanced sampling (Idrissi et al. 2022, SUBG/upsampling)"),
    Method("dro_classname", "class names + DRO (ablation)", "train", "group_dro", train_groups="pseudo",
           selection_groups="pseudo", pseudo_from="dro_classname", discovery_data="none (class names)", tuned=True),
    Method("dro_random", "random words + DRO (ablation)", "train", "group_dro", train_groups="pseudo",
           selection_groups="pseudo", pseudo_from="dro_random", discovery_data="none (random world words)",
           tuned=True),
)}
# The labellings the label stage writes pseudo-groups for (beside dro_dexter), by the method that needs them.
LABELLINGS = ("dro_dexter", "dro_b2t", "dro_classname", "dro_random")


class UnknownMethodError(ValueError):
    """A method name that is not in the registry (one line, listing the known ones)."""


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def labellings_needed(methods: list[str]) -> list[str]:
    """The pseudo-group labellings the given rows need, in registry order."""
    wanted = {get_method(m).pseudo_from for m in methods} - {None}
    return [lab for lab in LABELLINGS if lab in wanted]
