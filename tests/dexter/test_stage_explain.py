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
    assert "000_circle: reusing 1 finished run(s)" in capsys.readouterr().err
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
    assert "reusing" not in capsys.readouterr().err
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
    assert "reusing" not in capsys.readouterr().err
    assert (out / "run_0/result.json").stat().st_mtime_ns != stamp  # computed again, not moved over


def test_finished_stage_rerun_computes_again(tmp_path, model_set, erm, monkeypatch, capsys):
    """What ``dvc repro -f`` asks for: a finished stage keeps nothing to resume from."""
    monkeypatch.chdir(tmp_path)
    p = _params(tmp_path, model_set)
    first = (_explain(tmp_path, p, erm) / "run_0/result.json").stat().st_mtime_ns
    capsys.readouterr()
    second = (_explain(tmp_path, p, erm) / "run_0/result.json").stat().st_mtime_ns
    assert "reusing" not in capsys.readouterr().err and second != first


def test_skip_absent_classes(tmp_path, model_set, erm, monkeypatch):
    """--skip-absent-classes: on the 2-class world class 3 gives an empty
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


# ---------------------------------------------------------------------------------------------
# Several processes (processes > 1: torchrun workers, each a share of the classes)
# ---------------------------------------------------------------------------------------------


def _with_processes(path, n):
    params = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**params, "processes": n}))
    return path


def _keywords(out):
    return {p.parent.name: (d["keywords"], [(r["words"], r["steps"]) for r in d["runs"]])
            for p in sorted(out.glob("*/keywords.json")) for d in [json.loads(p.read_text())]}


def _fake_torchrun(monkeypatch, kill_rank=None):
    """``launch`` replaced by the workers run one after another in this process (env as torchrun sets it);
    ``kill_rank`` dies in its second run, and the launch then fails as torchrun's would."""
    from stages import explain, launch

    def fake(module, args, processes, torchrun):
        assert module == "stages.explain"
        failed = False
        for rank in range(processes):
            with monkeypatch.context() as m:
                m.setenv("RANK", str(rank))
                m.setenv("WORLD_SIZE", str(processes))
                m.setenv("LOCAL_RANK", str(rank))
                if rank == kill_rank:
                    _kill_during_run_1(m)
                try:
                    explain.main.__wrapped__(list(args))
                except _Killed:
                    failed = True
        if failed:
            raise launch.LaunchFailed("torchrun exited with status 1")

    monkeypatch.setattr(launch, "launch", fake)


def test_sharded_stage_resumes_after_a_killed_worker(tmp_path, model_set, erm, monkeypatch, capsys):
    """Rank 1 dies in its class's second run: the stage fails, nothing is published; the rerun reuses
    rank 0's finished class and rank 1's finished run, and the keywords are those of one process."""
    from stages import explain

    monkeypatch.chdir(tmp_path)
    one = _params(tmp_path, model_set)
    args = ["--params", str(one), "--classifier", str(erm), "--no-progress"]
    explain.main.__wrapped__([*args, "--out", "outputs/one", "--metrics", "one.json"])
    _with_processes(_params(tmp_path, model_set), 2)  # rewrites the same params.yaml with processes: 2
    _fake_torchrun(monkeypatch, kill_rank=1)
    with pytest.raises(SystemExit) as failed:
        explain.main.__wrapped__([*args, "--out", "outputs/two", "--metrics", "two.json"])
    assert failed.value.code == 1 and not (tmp_path / "outputs/two").exists()
    work = tmp_path / "outputs/checkpoints/explain/two"
    assert (work / "000_circle/keywords.json").exists()  # rank 0 finished its class
    assert (work / "001_square/run_0/result.json").exists() and not (work / "001_square/keywords.json").exists()
    _fake_torchrun(monkeypatch)
    capsys.readouterr()
    explain.main.__wrapped__([*args, "--out", "outputs/two", "--metrics", "two.json"])
    assert "001_square: reusing 1 finished run(s)" in capsys.readouterr().err
    assert _keywords(tmp_path / "outputs/two") == _keywords(tmp_path / "outputs/one")
    assert set(json.loads((tmp_path / "two.json").read_text())["classes"]) == {"circle", "square"}
    assert not work.exists()


def test_worker_refuses_a_work_folder_it_was_not_launched_for(tmp_path, model_set, erm, monkeypatch, capsys):
    from stages import explain

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr("sys.argv", ["explain", "--params", str(_params(tmp_path, model_set)),
                                     "--classifier", str(erm)])
    with pytest.raises(SystemExit) as exit_info:
        explain.main()
    assert exit_info.value.code == 2 and "was not prepared for these settings" in capsys.readouterr().err


def test_real_torchrun_two_processes_give_the_keywords_of_one(tmp_path, model_set, erm, monkeypatch):
    """The stage as DVC runs it, with processes: 2 (torchrun, two CPU workers): same keywords as one process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from stages import explain

    monkeypatch.chdir(tmp_path)
    p = _params(tmp_path, model_set)
    args = ["--params", str(p), "--classifier", str(erm), "--no-progress"]
    explain.main.__wrapped__([*args, "--out", "outputs/one", "--metrics", "one.json"])
    _with_processes(p, 2)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "stages.explain", *args, "--out", "outputs/two",
                           "--metrics", "two.json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "--nproc-per-node 2 --standalone" in proc.stderr  # the stages log to stderr (stages.common)
    assert "rank 0/2: classes [0]" in proc.stderr and "rank 1/2: classes [1]" in proc.stderr
    assert _keywords(tmp_path / "outputs/two") == _keywords(tmp_path / "outputs/one")
