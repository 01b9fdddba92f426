"""The train_erm stage redoes its work when forced, and skips finished work only after an interruption.

``dvc repro -f train_erm`` used to print "resuming ... after epoch 10/10" and retrain nothing: the
checkpoint folder is kept across runs (so a killed run resumes), and a finished checkpoint of the same
fingerprint was taken for an interrupted one.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


class _Killed(BaseException):
    pass


@pytest.fixture
def project(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dro_world import make_world

    monkeypatch.chdir(tmp_path)
    make_world(Path("data/prepared"), sizes={"train": 200, "val": 40, "test": 80})
    Path("params.yaml").write_text(yaml.safe_dump({
        "dataset": "synthetic", "device": "cpu",
        "synthetic": {"preset": "small", "image_size": 16, "train": {"arch": "small_cnn", "image_size": 16, "batch_size": 64,
                                                  "optimizer": "adam", "lr": 0.003, "epochs": 2}},
        "models": {"world": {"stable_diffusion": "x", "bert": "x", "clip": "x"}},
    }))
    return tmp_path


def _epochs_trained(err: str) -> list[str]:
    return [line.split()[1] for line in err.splitlines() if line.startswith("epoch ")]


def test_a_completed_stage_trains_again(project, capsys):
    from stages import train_erm

    train_erm.run([])
    assert _epochs_trained(capsys.readouterr().err) == ["1/2", "2/2"]
    train_erm.run([])  # what `dvc repro -f train_erm` runs: same params, same data, checkpoints still there
    err = capsys.readouterr().err
    assert _epochs_trained(err) == ["1/2", "2/2"], err
    assert "resuming" not in err and "finished in an earlier invocation" in err


def test_a_stage_killed_after_training_does_not_train_again(project, capsys, monkeypatch):
    import dro.pipeline
    from stages import train_erm

    def killed(*a, **k):
        raise _Killed

    real = dro.pipeline.evaluate_on_test
    monkeypatch.setattr(dro.pipeline, "evaluate_on_test", killed)
    with pytest.raises(_Killed):
        train_erm.run([])
    monkeypatch.setattr(dro.pipeline, "evaluate_on_test", real)
    capsys.readouterr()
    train_erm.run([])
    err = capsys.readouterr().err
    assert _epochs_trained(err) == [] and "after epoch 2/2" in err, err
    train_erm.run([])  # that invocation completed: the next one trains again
    assert _epochs_trained(capsys.readouterr().err) == ["1/2", "2/2"]


@pytest.mark.slow
def test_dvc_repro_force_retrains(project):
    """The same through the real dvc.yaml: ``dvc repro -f train_erm`` runs every epoch again."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("stages", "common", "world", "dexter", "dro"):
        shutil.copytree(REPO / name, project / name, ignore=ignore)
    shutil.copytree(REPO / "data" / "world", project / "data" / "world", ignore=ignore)
    (project / "data" / "world4").mkdir()  # a dependency in dvc.yaml; the small preset does not read it
    (project / "data" / "world4" / "README").write_text("not used by the small preset\n")
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    shutil.rmtree(project / "data" / "prepared")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["device"] = "cpu"
    params["synthetic"].update(preset="small", train_size=200, val_size=40, test_size=80)
    params["synthetic"]["train"].update(epochs=2, erm_epochs=None, batch_size=64)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": "", "DO_NOT_TRACK": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def dvc(*args):
        proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout + proc.stderr

    dvc("init", "--no-scm", "-q")
    assert _epochs_trained(dvc("repro", "train_erm")) == ["1/2", "2/2"]
    forced = dvc("repro", "-f", "train_erm")
    assert _epochs_trained(forced) == ["1/2", "2/2"], forced
    assert "resuming" not in forced
