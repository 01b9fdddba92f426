"""End to end: the real ``dvc repro`` over every stage, on a shrunk copy of the default params with the
small preset (the 2x2 world, whose models ``data/world`` are the quicker ones).

The workspace is a temporary copy of the project's pipeline files and the committed world models, so the
test exercises exactly what a user's ``dvc repro`` runs (stage commands, deps, params, outs), only smaller:
fewer images, one short DEXTER run per class, a couple of epochs. It checks the outputs' shapes and
invariants, not the acceptance numbers (those need the full-size run; see ``stages/acceptance.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORLD = REPO / "data" / "world"
WORLD4 = REPO / "data" / "world4"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (WORLD / "sd").is_dir(), reason="world models not trained yet (data/world)"),
]


def shrink(params: dict) -> dict:
    """The default params, small enough for a test: same stages, same code paths."""
    s = params["synthetic"]
    s.update(preset="small", train_size=400, val_size=80, test_size=160)
    s["train"].update(epochs=2, erm_epochs=2, batch_size=64)
    params["dexter"].update(runs_per_class=1, steps=6, min_steps=0, early_stop=0)
    params["seeds"] = [0]
    return params


def copy_pipeline(ws: Path) -> None:
    """The project's pipeline files and the small world's committed models, copied into ``ws``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("stages", "common", "world", "dexter", "dro"):
        shutil.copytree(REPO / name, ws / name, ignore=ignore)
    shutil.copytree(WORLD, ws / "data" / "world", ignore=ignore)
    # dvc.yaml lists both world folders as deps; these runs read only the small one
    (ws / "data" / "world4").mkdir()
    (ws / "data" / "world4" / "README").write_text("not used by the small preset\n")
    shutil.copy(REPO / "dvc.yaml", ws / "dvc.yaml")


def init_dvc(ws: Path, params: dict) -> None:
    """Write ``params`` as the workspace's params.yaml and make it a DVC project (no git, no analytics)."""
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "init", "--no-scm", "-q"], ws)
    run(["dvc", "config", "core.analytics", "false"], ws)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("pipeline")
    copy_pipeline(ws)
    init_dvc(ws, shrink(yaml.safe_load((REPO / "params.yaml").read_text())))
    return ws


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def repro(workspace) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", "repro"], workspace)


def test_every_stage_ran_and_wrote_its_outputs(workspace, repro):
    for path in ("metrics/data.json", "metrics/world.json", "metrics/erm.json", "metrics/labelling.json",
                 "results/metrics.json", "results/table.md", "results/report.md", "results/report.html",
                 "results/keywords.json", "outputs/dexter/000_circle", "outputs/dexter/001_square",
                 "metrics/summary.json"):
        assert (workspace / path).exists(), f"{path} missing after dvc repro"


def test_metrics_have_the_documented_shape(workspace, repro):
    metrics = json.loads((workspace / "results/metrics.json").read_text())
    from stages.params.dro import DEFAULT_METHODS

    rows = yaml.safe_load((REPO / "params.yaml").read_text())["synthetic"]["methods"] or DEFAULT_METHODS
    assert list(metrics["methods"]) == [*rows, "dro_classname", "dro_random"]
    for m in metrics["methods"].values():
        assert 0.0 <= m["worst_group_acc"] <= m["avg_acc"] <= 1.0
        assert len(m["group_acc"]) == 8  # 2 shapes x 2 colours x 2 backgrounds
        assert m["worst_group_acc"] == pytest.approx(min(v for v in m["group_acc"].values() if v is not None))


def test_keywords_cover_every_class_and_come_from_the_world_vocabulary(workspace, repro):
    keywords = json.loads((workspace / "results/keywords.json").read_text())
    assert set(keywords) == {"circle", "square"}
    from world.synthetic import SyntheticWorldConfig

    vocabulary = set(SyntheticWorldConfig.from_preset("small").vocabulary) | {"with", "and"}
    for words in keywords.values():
        assert set(words) <= vocabulary


def test_discovery_is_scored_and_reported(workspace, repro):
    discovery = json.loads((workspace / "results/metrics.json").read_text())["discovery"]
    assert set(discovery["classes"]) == {"circle", "square"}
    assert discovery["classes"]["circle"]["true_shortcut"] == "background=water"
    assert "## Discovery against the world's true shortcuts" in (workspace / "results/report.md").read_text()
    assert set(json.loads((workspace / "metrics/dexter.json").read_text())["classes"]) == {"circle", "square"}


def test_second_repro_reruns_nothing(workspace, repro):
    again = run([sys.executable, "-m", "dvc", "repro"], workspace)
    assert "Running stage" not in again.stdout, again.stdout


def test_a_dexter_setting_or_the_class_list_reruns_explain(workspace, repro):
    path = workspace / "params.yaml"
    original = path.read_text()

    def status_after(edit) -> dict:
        params = yaml.safe_load(original)
        edit(params["dexter"])
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], workspace).stdout or "{}")

    try:
        assert "explain" in status_after(lambda d: d.update(classes=[1]))
        assert "explain" in status_after(lambda d: d.update(lr=0.05))
    finally:
        path.write_text(original)
