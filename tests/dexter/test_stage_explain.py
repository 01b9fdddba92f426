import json

import pytest
import yaml


def _params(tmp_path, model_set, **dexter):
    params = {
        "dataset": "synthetic",
        "device": "cpu",
        "models": {"world": {"stable_diffusion": model_set["stable_diffusion"], "lcm_lora": None,
                             "bert": model_set["bert"], "clip": model_set["clip"]}},
        "dexter": {"steps": 2, "runs_per_class": 2, **dexter},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def erm(tmp_path):
    import torch

    from dro.models import build_classifier, save_classifier

    torch.manual_seed(0)
    save_classifier(build_classifier("small_cnn", ("circle", "square"), 16, width=4), tmp_path / "erm")
    return tmp_path / "erm"


def test_stage_runs_all_classes_batched(tmp_path, model_set, erm, monkeypatch):
    from stages import explain

    monkeypatch.chdir(tmp_path)
    p = _params(tmp_path, model_set)
    explain.main.__wrapped__(["--params", str(p), "--classifier", str(erm), "--out", "outputs/dexter",
                              "--no-progress"])
    metrics = json.loads((tmp_path / "metrics/dexter.json").read_text())
    assert set(metrics["classes"]) == {"circle", "square"}
    assert metrics["classes"]["square"]["class_index"] == 1
    for name in ("000_circle", "001_square"):
        data = json.loads((tmp_path / "outputs/dexter" / name / "keywords.json").read_text())
        assert len(data["runs"]) == 2
        assert json.loads((tmp_path / "outputs/dexter" / name / "run_0/config.json").read_text())["lora"] is None


def test_stage_rejects_bad_classes_before_loading(tmp_path, model_set, erm, monkeypatch, capsys):
    from stages import explain

    monkeypatch.chdir(tmp_path)
    p = _params(tmp_path, model_set, classes=[0, 7])
    import dexter.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_dexter_models", lambda *a, **k: pytest.fail("loaded big models"))
    monkeypatch.setattr("sys.argv", ["explain", "--params", str(p), "--classifier", str(erm)])
    with pytest.raises(SystemExit) as exit_info:
        explain.main()
    assert exit_info.value.code == 2
    assert "dexter.classes: [7] out of range" in capsys.readouterr().err
