"""Dataset sections of params.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from stages.params.base import Section
from stages.params.dexter import DexterOverrides

# The synthetic world's presets: the world (world.synthetic.WORLD_PRESETS) and the world models
# (a key of params.yaml's ``models``) trained to cover it.
PRESET_MODELS = {"rich": "world4", "small": "world"}
AblationName = Literal["dro_classname", "dro_random"]


class TrainSettings(Section):
    """How classifiers are trained on this dataset (the audited ERM model and every retraining)."""

    arch: str = "small_cnn"
    pretrained: bool = False
    image_size: int = Field(32, ge=8)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    optimizer: Literal["sgd", "adam"] = "adam"
    epochs: int = Field(10, ge=1)
    erm_epochs: int | None = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)


class ShortcutSpec(Section):
    """One class's shortcut: ``value`` of ``attribute`` in a share ``correlation`` of its training images."""

    attribute: Literal["background", "color"]
    value: str
    correlation: float = Field(ge=0, le=1)


def _default_world(key: str):
    from world.synthetic import WORLD_PRESETS

    value = WORLD_PRESETS["rich"][key]
    if key == "shortcuts":
        return {c: None if s is None else {"attribute": s.attribute, "value": s.value, "correlation": s.correlation}
                for c, s in value.items()}
    return list(value)


class SyntheticSection(Section):
    """The built-in world. ``preset`` (``small`` | ``rich``), when set, REPLACES ``classes``, ``colors``,
    ``backgrounds``, ``shortcuts`` and ``models`` by the preset's; the other keys still apply."""

    preset: Literal["small", "rich"] | None = None
    classes: list[str] = Field(default_factory=lambda: _default_world("classes"))
    colors: list[str] = Field(default_factory=lambda: _default_world("colors"))
    backgrounds: list[str] = Field(default_factory=lambda: _default_world("backgrounds"))
    shortcuts: dict[str, ShortcutSpec | None] = Field(default_factory=lambda: _default_world("shortcuts"))
    image_size: int = Field(32, ge=16, le=256)
    # the rich world's sizes: ~8 training images per bias-conflicting cell of a 0.95 shortcut (4,000 left
    # 4, too few for group DRO with true groups to learn the hardest cells: 0.73 worst-group); 60 test
    # images per cell, so one error moves a cell's accuracy by 1.7 points, not 3.3
    train_size: int = Field(8000, ge=1)
    val_size: int = Field(960, ge=1)
    test_size: int = Field(3840, ge=1)
    seed: int = 0
    models: str = "world4"
    ablations: list[AblationName] = Field(default_factory=lambda: ["dro_classname", "dro_random"])
    # The world's rows, replacing dro.methods there (null: dro.methods). params.yaml names the rows the
    # benchmark's claims rest on, to keep a first `dvc repro` inside its 15-minute budget on 2 CPU cores (each
    # full retraining costs about a minute there); null here, so a config that never mentions it gets dro.methods.
    methods: list[str] | None = None
    # The rich world's shapes need ~20 epochs to be learnt; the AUDITED model stops at 6, when it has learnt the
    # shortcuts but not yet memorised the few conflicting images (docs/METHOD.md, "The audited model")
    train: TrainSettings = TrainSettings(epochs=20, erm_epochs=6)
    dexter: DexterOverrides | None = None  # this dataset's overrides of the global dexter section

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        preset = data.get("preset") if isinstance(data, dict) else None
        if preset not in PRESET_MODELS:
            return data  # no preset (or an unknown one, which the field's own check reports)
        from world.synthetic import WORLD_PRESETS

        world = WORLD_PRESETS[preset]
        return {**data, "classes": list(world["classes"]), "colors": list(world["colors"]),
                "backgrounds": list(world["backgrounds"]), "models": PRESET_MODELS[preset],
                "shortcuts": {c: None if s is None else {"attribute": s.attribute, "value": s.value,
                                                         "correlation": s.correlation}
                              for c, s in world["shortcuts"].items()}}

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v):
        from stages.params.dro import check_method_names

        return v if v is None else check_method_names(v)

    @model_validator(mode="after")
    def _valid_world(self) -> SyntheticSection:
        if len(set(self.ablations)) != len(self.ablations):
            raise ValueError("ablations has duplicates")
        self.world_config()  # unknown class/value, shared shortcut value, ...: one line naming the key
        return self

    def world_config(self):
        """The :class:`world.synthetic.SyntheticWorldConfig` this section describes."""
        from world.synthetic import SyntheticWorldConfig, WorldSpecError

        try:
            return SyntheticWorldConfig(
                classes=self.classes, colors=self.colors, backgrounds=self.backgrounds,
                shortcuts={c: None if s is None else s.model_dump() for c, s in self.shortcuts.items()},
                image_size=self.image_size,
                split_sizes={"train": self.train_size, "val": self.val_size, "test": self.test_size},
                seed=self.seed,
            )
        except WorldSpecError as e:
            raise ValueError(str(e)) from None


class WaterbirdsSection(Section):
    root: str = "data/waterbirds"
    download: bool = False
    models: str = "real"
    train: TrainSettings = TrainSettings(
        arch="resnet50", pretrained=True, image_size=224, lr=1e-5, weight_decay=1.0,
        optimizer="sgd", epochs=300, num_workers=2,
    )
    dexter: DexterOverrides | None = None


class CelebASection(Section):
    root: str = "data/celeba"
    target: str = "Blond_Hair"
    spurious: str = "Male"
    download: bool = False
    models: str = "real"
    train: TrainSettings = TrainSettings(
        arch="resnet50", pretrained=True, image_size=224, lr=1e-5, weight_decay=0.1,
        optimizer="sgd", epochs=50, num_workers=2,
    )
    dexter: DexterOverrides | None = None

    @model_validator(mode="after")
    def _distinct(self) -> CelebASection:
        if self.target == self.spurious:
            raise ValueError("target and spurious must be different attributes")
        return self


class FolderSection(Section):
    """Bring your own dataset: a CSV of image path, class, split and optional attribute columns under
    ``root`` (see :mod:`dro.data.folder`). ``csv`` and a ``class_names`` file are relative to ``root``.
    Attribute columns are used only for evaluation and the oracle row."""

    root: str = "data/folder"
    csv: str = "metadata.csv"
    image_column: str = "image"
    class_column: str = "class"
    split_column: str = "split"
    attribute_columns: list[str] = Field(default_factory=list)
    class_names: list[str] | str | None = None  # null: the class column's distinct values, sorted
    splits: dict[Literal["train", "val", "test"], str] = Field(
        default_factory=lambda: {"train": "train", "val": "val", "test": "test"})
    models: str = "real"
    train: TrainSettings = TrainSettings(
        arch="resnet50", pretrained=True, image_size=224, lr=1e-3, weight_decay=1e-4,
        optimizer="sgd", epochs=20, num_workers=2,
    )
    dexter: DexterOverrides | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FolderSection:
        if set(self.splits) != {"train", "val", "test"}:
            raise ValueError("splits must map each of train, val and test to a value of the split column")
        if len(set(self.splits.values())) != 3:
            raise ValueError("splits: train, val and test need three different values")
        if len(set(self.attribute_columns)) != len(self.attribute_columns):
            raise ValueError("attribute_columns has duplicates")
        used = {self.image_column, self.class_column, self.split_column}
        if len(used) != 3 or used & set(self.attribute_columns):
            raise ValueError("image, class, split and attribute columns must be different columns")
        return self


class ModelSet(Section):
    """Where each model comes from: a hub id or a local directory, loaded through the same path."""

    stable_diffusion: str
    lcm_lora: str | None = None
    bert: str
    clip: str
