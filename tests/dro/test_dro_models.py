"""Classifiers: uniform shape, save/load round trip, clear errors."""

import urllib.error

import pytest
import torch

from dro.models import ModelError, build_classifier, load_classifier, save_classifier


def test_small_cnn_shape_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = build_classifier("small_cnn", ["circle", "square"], 16, width=8)
    x = torch.rand(3, 3, 32, 32)  # any input size: preprocess resizes
    assert m.preprocess(x).shape == (3, 3, 16, 16)
    assert m.backbone(m.preprocess(x)).shape == (3, 16) and m.head.out_features == 2
    assert torch.allclose(m(x), m.head(m.features(x)))
    save_classifier(m, tmp_path / "m")
    back = load_classifier(tmp_path / "m")
    assert back.class_names == ("circle", "square") and back.config.extra == {"width": 8}
    assert torch.equal(back(x), m.eval()(x))
    with pytest.raises(ValueError):
        m.preprocess(torch.rand(3, 16, 16))


def test_torchvision_arch_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = build_classifier("resnet18", ["a", "b", "c"], 32).eval()
    assert m.feature_dim == 512 and m.config.mean == (0.485, 0.456, 0.406)
    x = torch.rand(2, 3, 40, 40)
    save_classifier(m, tmp_path / "r")
    assert torch.allclose(load_classifier(tmp_path / "r")(x), m(x))


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="unknown arch"):
        build_classifier("vit_huge", ["a", "b"], 32)
    with pytest.raises(ModelError, match="no classifier"):
        load_classifier(tmp_path)
    import torchvision

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(ModelError, match="hub/checkpoints"):
        build_classifier("resnet50", ["a", "b"], 224, pretrained=True)
