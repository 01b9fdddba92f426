"""Dataset sections of params.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stages.params.base import Section
from stages.params.dexter import DexterOverrides


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


class SyntheticSection(Section):
    num_classes: int = Field(2, ge=2, le=4)
    spurious: Literal["background", "color"] = "background"
    correlation: float = Field(0.95, ge=0, le=1)
    image_size: int = Field(32, ge=16, le=256)
    train_size: int = Field(3000, ge=1)
    val_size: int = Field(600, ge=1)
    test_size: int = Field(1200, ge=1)
    seed: int = 0
    models: str = "world"
    train: TrainSettings = TrainSettings()
    dexter: DexterOverrides | None = None  # this dataset's overrides of the global dexter section


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


class ModelSet(Section):
    """Where each model comes from: a hub id or a local directory, loaded through the same path."""

    stable_diffusion: str
    lcm_lora: str | None = None
    bert: str
    clip: str
