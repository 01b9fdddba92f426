"""Classifiers: uniform shape, save/load round trip, clear errors."""

import urllib.error

import pytest
import torch

from common.classifier import ModelError, build_classifier, load_classifier, save_classifier


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


def test_file_source_geometry_follows_the_group_dro_code(tmp_path):
    import numpy as np
    from PIL import Image

    from dro.data import DatasetInfo, GroupImageDataset
    from dro.sources import FileSource, load_square

    arr = np.zeros((218, 178, 3), np.uint8)
    arr[:20] = 255  # a white band at the top: cut away by CelebA's centre crop (218 -> 178 rows)
    im = Image.fromarray(arr)
    assert load_square(im, 32, "celeba").max() == 0
    assert load_square(im, 32, "other").max() == 255
    wb = np.zeros((100, 100, 3), np.uint8)
    wb[:, :4] = 255  # left border: resized to 256/224 then cropped away
    assert load_square(Image.fromarray(wb), 224, "waterbirds")[:, :, 0].max() == 0
    path = tmp_path / "a.png"
    im.save(path)
    info = DatasetInfo("celeba", ("a", "b"), "Male", ("0", "1"))
    src = FileSource(GroupImageDataset(info, "train", [0], [0], files=[path]), 16)
    (idx, x), = list(src.iterate(np.array([0]), 4, "cpu"))
    assert idx.tolist() == [0] and x.shape == (1, 3, 16, 16) and float(x.max()) == 0.0
