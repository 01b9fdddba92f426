import pytest
import torch
from torch import nn

from dexter.classifiers import (
    ClassifierError,
    FeatureHeadClassifier,
    load_torchvision,
    read_state_dict,
    top_feature_neurons,
)


def test_adapter_returns_logits_and_features():
    head = nn.Linear(4, 3)
    clf = FeatureHeadClassifier(lambda x: x.mean((2, 3)).repeat(1, 2)[:, :4], head, lambda x: x * 2, ["a", "b", "c"])
    x = torch.rand(2, 3, 8, 8)
    logits, feats = clf(x)
    assert feats.shape == (2, 4) and torch.allclose(logits, head(feats))
    with pytest.raises(ClassifierError, match="class names"):
        FeatureHeadClassifier(nn.Identity(), head, nn.Identity(), ["a"])


def test_top_feature_neurons():
    w = torch.tensor([[0.1, 0.9, -2.0, 0.5], [3.0, 0.0, 1.0, 2.0]])
    assert top_feature_neurons(w, 0, 2) == [1, 3]
    assert top_feature_neurons(w, 1, 3) == [0, 3, 2]
    with pytest.raises(ClassifierError):
        top_feature_neurons(w, 2, 1)


def test_robust_checkpoint_format_and_torchvision_split(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=3).eval()
    robust = {"model": {**{f"module.model.{k}": v for k, v in net.state_dict().items()},
                        "module.normalizer.new_mean": torch.zeros(3)}, "epoch": 5}
    torch.save(robust, tmp_path / "robust.pth")
    assert set(read_state_dict(tmp_path / "robust.pth")) == set(net.state_dict())
    clf = load_torchvision("resnet18", checkpoint=tmp_path / "robust.pth", class_names=["x", "y", "z"])
    assert clf.num_classes == 3 and clf.head.in_features == 512
    x = torch.rand(1, 3, 64, 64)
    logits, feats = clf(x)
    assert feats.shape == (1, 512)
    assert torch.allclose(logits, net(clf.preprocess(x)), atol=1e-5)


def test_unknown_names_and_bad_checkpoints(tmp_path):
    with pytest.raises(ClassifierError, match="unknown classifier 'resnet5000'"):
        load_torchvision("resnet5000")
    with pytest.raises(ClassifierError, match="not found"):
        load_torchvision("resnet18", checkpoint=tmp_path / "nope.pth")


def test_torchvision_by_name_uses_cached_imagenet_weights_and_names(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints" / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(1)
    net = resnet18().eval()
    torch.save(net.state_dict(), ckpt)
    clf = load_torchvision("resnet18")
    assert clf.num_classes == 1000 and clf.class_names[0] == "tench"
    assert torch.equal(clf.head.weight, net.fc.weight)


def test_unreachable_imagenet_weights_are_a_clear_error(monkeypatch):
    import urllib.error

    import torchvision.models

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(ClassifierError, match=r"ImageNet weights for 'resnet18' cannot be fetched.*--checkpoint"):
        load_torchvision("resnet18")
