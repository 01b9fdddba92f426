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


def _robustness_layout(net: nn.Module, parallel: bool = True) -> dict:
    """A checkpoint as the robustness library saves it: network, attacker copy, normaliser, optimiser state."""
    p = "module." if parallel else ""
    sd = net.state_dict()
    model = {**{f"{p}model.{k}": v for k, v in sd.items()}, **{f"{p}attacker.model.{k}": v for k, v in sd.items()},
             f"{p}normalizer.new_mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
             f"{p}normalizer.new_std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1),
             f"{p}attacker.normalize.new_mean": torch.zeros(3, 1, 1)}
    return {"model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
            "schedule": None, "epoch": 90}


@pytest.mark.parametrize("parallel", [True, False])
def test_robustness_library_checkpoint_loads(tmp_path, parallel):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=4).eval()
    torch.save(_robustness_layout(net, parallel), tmp_path / "robust.pth")
    assert set(read_state_dict(tmp_path / "robust.pth")) == set(net.state_dict())
    clf = load_torchvision("resnet18", checkpoint=tmp_path / "robust.pth")
    assert torch.equal(clf.head.weight, net.fc.weight)


def _fake_dill(monkeypatch):
    """A stand-in ``dill._dill`` module, so a file can reference dill's globals as a dill-pickled one does."""
    import sys
    import types

    dill = types.ModuleType("dill")
    dill_inner = types.ModuleType("dill._dill")

    def _load_type(name):
        return {"NoneType": type(None)}[name]

    _load_type.__module__, _load_type.__qualname__ = "dill._dill", "_load_type"
    dill_inner._load_type = _load_type
    dill._dill = dill_inner
    monkeypatch.setitem(sys.modules, "dill", dill)
    monkeypatch.setitem(sys.modules, "dill._dill", dill_inner)
    return _load_type


class _DillType:
    """Pickles as ``dill._dill._load_type('NoneType')``, the way dill writes a type by name."""

    def __init__(self, fn):
        self.fn = fn

    def __reduce__(self):
        return self.fn, ("NoneType",)


def test_checkpoint_the_safe_loader_refuses_is_a_one_line_error_with_the_fix(tmp_path, monkeypatch):
    import sys

    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=3).eval()
    ckpt = _robustness_layout(net)
    ckpt["schedule"] = _DillType(_fake_dill(monkeypatch))
    path = tmp_path / "robust_resnet50.pth"
    torch.save(ckpt, path)
    with pytest.raises(ClassifierError) as err:
        load_torchvision("resnet18", checkpoint=path)
    message = str(err.value)
    assert "\n" not in message and "dill._dill._load_type" in message and "--trust-checkpoint" in message
    assert "pip install dill" in message and "torch.save" in message
    # The user trusts the file: it loads (dill importable) ...
    clf = load_torchvision("resnet18", checkpoint=path, trust_checkpoint=True)
    assert torch.equal(clf.head.weight, net.fc.weight)
    # ... or says which module is missing.
    monkeypatch.delitem(sys.modules, "dill._dill")
    monkeypatch.delitem(sys.modules, "dill")
    with pytest.raises(ClassifierError, match=r"pickled with the module 'dill'.*pip install dill"):
        load_torchvision("resnet18", checkpoint=path, trust_checkpoint=True)


def test_original_input_setting_is_the_default_for_the_original_classifiers():
    from dexter.classifiers import ResizeNormalize

    torch.manual_seed(0)
    clf = load_torchvision("resnet50", pretrained=False)
    assert isinstance(clf.preprocess, ResizeNormalize) and clf.preprocess.side == 256
    assert clf.info["preprocess"] == "original" and "no crop" in clf.info["input"]
    x = torch.rand(1, 3, 512, 512)
    # torchvision's Resize(256) with antialias=None on a tensor, then Normalize, on the WHOLE image
    ref = nn.functional.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=False)
    ref = (ref - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1)
    assert torch.allclose(clf.preprocess(x), ref, atol=1e-6)
    wide = clf.preprocess(torch.rand(1, 3, 512, 768))
    assert wide.shape[-2:] == (256, 384)  # aspect kept, nothing cropped
    tv = load_torchvision("resnet50", pretrained=False, preprocess="torchvision")
    assert tv.info["preprocess"] == "torchvision" and tv.preprocess(x).shape[-2:] == (224, 224)
    other = load_torchvision("resnet18", pretrained=False)
    assert other.info["preprocess"] == "torchvision"
    with pytest.raises(ClassifierError, match="original code's setting"):
        load_torchvision("resnet18", pretrained=False, preprocess="original")


def test_vit_b_16_gets_its_224_input_on_the_whole_image():
    torch.manual_seed(0)
    clf = load_torchvision("vit_b_16", pretrained=False)
    assert clf.preprocess.side == 224
    logits, feats = clf(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, 1000) and feats.shape == (1, 768)


def test_original_setting_asks_for_the_v1_weights(tmp_path, monkeypatch):
    from torchvision.models import ResNet50_Weights, resnet50

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    v1 = tmp_path / "hub" / "checkpoints" / ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    v1.parent.mkdir(parents=True)
    torch.manual_seed(2)
    net = resnet50().eval()
    torch.save(net.state_dict(), v1)
    clf = load_torchvision("resnet50")  # default: the original's setting -> V1, found in the cache
    assert torch.equal(clf.head.weight, net.fc.weight) and clf.info["weights"].endswith("IMAGENET1K_V1")
    assert ResNet50_Weights.IMAGENET1K_V1.url != ResNet50_Weights.DEFAULT.url


def test_moving_a_wrapped_pipeline_classifier_moves_what_its_preprocess_reads():
    """The pipeline's classifiers keep mean/std buffers on the model, outside backbone and head."""
    from common.classifier import build_classifier
    from dexter.classifiers import wrap_pipeline_classifier

    model = build_classifier("small_cnn", ("a", "b"), 16, width=4)
    clf = wrap_pipeline_classifier(model).to(torch.float64)
    assert model._mean.dtype == torch.float64  # on a GPU: the device would be moved the same way
    logits, _ = clf(torch.rand(1, 3, 16, 16, dtype=torch.float64))
    assert logits.dtype == torch.float64


def test_one_preprocessing_implementation_and_one_error_for_every_classifier():
    """DEXTER's input settings are modes of the common preprocessing, its errors the common ModelError, and a
    pipeline classifier is fed exactly the input it was trained with (its own preprocess)."""
    from common.checkpoints import CheckpointError
    from common.classifier import ModelError, Preprocess, build_classifier, resize_and_normalise
    from dexter.classifiers import Normalize, ResizeNormalize, wrap_pipeline_classifier

    assert isinstance(ResizeNormalize(256), Preprocess) and isinstance(Normalize(224, resize=256), Preprocess)
    assert ClassifierError is ModelError and issubclass(CheckpointError, ModelError)
    torch.manual_seed(0)
    model = build_classifier("small_cnn", ("a", "b"), 32, width=4).eval()
    x = torch.rand(2, 3, 64, 64)  # a generated image, bigger than the classifier's 32 px
    seen = wrap_pipeline_classifier(model).preprocess(x)
    half = torch.full((1, 3, 1, 1), 0.5)
    assert torch.equal(seen, resize_and_normalise(x, 32, half, half, mode="square"))
    assert torch.equal(seen, model.preprocess(x))


def test_dexter_and_the_import_give_the_same_download_error(monkeypatch):
    import urllib.error

    import torchvision.models

    from common.classifier import ModelError, build_classifier

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    messages = []
    for load in (lambda: load_torchvision("resnet50"), lambda: build_classifier("resnet50", ["a", "b"], 224,
                                                                                  pretrained=True)):
        with pytest.raises(ModelError) as err:
            load()
        messages.append(str(err.value).split(";")[0])
    assert messages[0] == messages[1] == "ImageNet weights for 'resnet50' cannot be fetched (ResNet50_Weights.IMAGENET1K_V1"
