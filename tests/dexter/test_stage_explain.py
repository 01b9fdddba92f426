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

    from common.classifier import build_classifier, save_classifier

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


class _Killed(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way up handles it."""


def _explain(tmp_path, params, erm, *extra):
    from stages import explain

    explain.main.__wrapped__(["--params", str(params), "--classifier", str(erm), "--out", "outputs/dexter/class_0",
                              "--class-index", "0", "--no-progress", *extra])
    return tmp_path / "outputs/dexter/class_0/000_circle"


def _kill_during_run_1(monkeypatch):
    """The first run finishes; the process 'dies' when the second run would be written."""
    from dexter import outputs

    real, calls = outputs.write_run, []

    def write_run(directory, *a, **k):
        calls.append(directory)
        if len(calls) == 2:
            raise _Killed
        return real(directory, *a, **k)

    monkeypatch.setattr(outputs, "write_run", write_run)
    return real


def _interrupted(tmp_path, params, erm, monkeypatch):
    """Run the stage until it is killed in run 1; returns run 0's result.json (in the work folder)."""
    from dexter import outputs

    real = _kill_during_run_1(monkeypatch)
    with pytest.raises(_Killed):
        _explain(tmp_path, params, erm)
    monkeypatch.setattr(outputs, "write_run", real)
    [result] = (tmp_path / "outputs/checkpoints/explain").glob("class_0/*/run_0/result.json")
    assert not (tmp_path / "outputs/dexter/class_0").exists()  # nothing half-done where DVC looks
    return result


def test_rerun_after_a_kill_reuses_finished_runs(tmp_path, model_set, erm, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    p = _params(tmp_path, model_set)
    run_0 = _interrupted(tmp_path, p, erm, monkeypatch)
    stamp, content = run_0.stat().st_mtime_ns, run_0.read_text()
    capsys.readouterr()
    out = _explain(tmp_path, p, erm)
    assert "000_circle: reusing 1 finished run(s)" in capsys.readouterr().out
    assert (out / "run_0/result.json").stat().st_mtime_ns == stamp and (out / "run_0/result.json").read_text() == content
    assert [r["run"] for r in json.loads((out / "keywords.json").read_text())["runs"]] == [0, 1]
    assert not (tmp_path / "outputs/checkpoints/explain/class_0").exists()  # a finished stage leaves no work
    metrics = json.loads((tmp_path / "metrics/dexter.json").read_text())
    assert metrics["runs_reused_from_interrupted_invocation"] == 1


def test_rerun_with_other_settings_discards_the_interrupted_runs(tmp_path, model_set, erm, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _interrupted(tmp_path, _params(tmp_path, model_set), erm, monkeypatch)
    capsys.readouterr()
    out = _explain(tmp_path, _params(tmp_path, model_set, lr=0.05), erm)  # a changed setting
    assert "reusing" not in capsys.readouterr().out
    assert json.loads((out / "run_0/config.json").read_text())["lr"] == 0.05


def test_rerun_with_another_classifier_discards_the_interrupted_runs(tmp_path, model_set, erm, monkeypatch, capsys):
    import torch

    from common.classifier import build_classifier, save_classifier

    monkeypatch.chdir(tmp_path)
    p = _params(tmp_path, model_set)
    stamp = _interrupted(tmp_path, p, erm, monkeypatch).stat().st_mtime_ns
    torch.manual_seed(1)  # same folder, other weights (a retrained ERM model)
    save_classifier(build_classifier("small_cnn", ("circle", "square"), 16, width=4), erm)
    capsys.readouterr()
    out = _explain(tmp_path, p, erm)
    assert "reusing" not in capsys.readouterr().out
    assert (out / "run_0/result.json").stat().st_mtime_ns != stamp  # computed again, not moved over


def test_finished_stage_rerun_computes_again(tmp_path, model_set, erm, monkeypatch, capsys):
    """What ``dvc repro -f`` asks for: a finished stage keeps nothing to resume from."""
    monkeypatch.chdir(tmp_path)
    p = _params(tmp_path, model_set)
    first = (_explain(tmp_path, p, erm) / "run_0/result.json").stat().st_mtime_ns
    capsys.readouterr()
    second = (_explain(tmp_path, p, erm) / "run_0/result.json").stat().st_mtime_ns
    assert "reusing" not in capsys.readouterr().out and second != first


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
