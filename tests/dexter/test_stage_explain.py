import json

import pytest
import yaml


def _params(tmp_path, model_set, **dexter):
    params = {
        "dataset": "synthetic",
        "device": "cpu",
        "synthetic": {"preset": "small"},
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


def test_dvc_fan_out_skips_classes_the_world_lacks(tmp_path, model_set, erm, monkeypatch):
    """dvc.yaml fans out over dexter.classes ([0..3]); on the 2-class world explain@3 writes an empty
    folder and a metrics file saying so, without loading DEXTER's models."""
    from stages import explain

    monkeypatch.chdir(tmp_path)
    p = _params(tmp_path, model_set)
    import dexter.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_dexter_models", lambda *a, **k: pytest.fail("loaded big models"))
    explain.main.__wrapped__(["--params", str(p), "--classifier", str(erm), "--out", "outputs/dexter/class_3",
                              "--metrics", "m.json", "--class-index", "3", "--skip-absent-classes"])
    assert (tmp_path / "outputs/dexter/class_3").is_dir()
    assert not list((tmp_path / "outputs/dexter/class_3").iterdir())
    assert json.loads((tmp_path / "m.json").read_text())["skipped"] == [3]
