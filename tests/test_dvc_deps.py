"""Editing a default in the schema marks the right DVC stages stale, and no other.

A temporary DVC workspace holds a copy of the code and of params.yaml, and a dvc.yaml with the real stages'
CODE dependencies and params but trivial commands (each writes one stamp file): ``dvc repro`` takes
seconds, and ``dvc status`` then says which stages an edit of the schema makes stale.
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

pytestmark = pytest.mark.slow  # about 2 minutes on 2 loaded cores: one dvc repro and a dvc status per edit

REPO = Path(__file__).resolve().parents[1]
CODE = ("stages", "common", "world", "dexter", "dro")


def _env() -> dict:
    return {**os.environ, "DO_NOT_TRACK": "1", "PYTHONPATH": "",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _dvc(ws: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def _code_only(stage: dict, item: str | None = None) -> dict:
    deps = []
    for d in stage.get("deps", []):
        d = d.replace("${item}", item) if item else d
        if d.split("/")[0] in CODE:
            deps.append(d)
    return {"deps": deps, "params": stage.get("params", [])}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("dvcdeps")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in CODE:
        shutil.copytree(REPO / name, ws / name, ignore=ignore)
    shutil.copy(REPO / "params.yaml", ws / "params.yaml")
    stages = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in stage:
            stage, name = stage["do"], f"{name}_0"
            stages[name] = _code_only(stage, "0")
        else:
            stages[name] = _code_only(stage)
        stages[name] = {"cmd": f"mkdir -p out && touch out/{name}", **stages[name], "outs": [f"out/{name}"]}
    (ws / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    _dvc(ws, "init", "--no-scm", "-q")
    _dvc(ws, "config", "core.analytics", "false")
    _dvc(ws, "repro", "-q")
    assert _stale(ws) == set()
    return ws


def _stale(ws: Path) -> set[str]:
    return set(json.loads(_dvc(ws, "status", "--json") or "{}"))


def _edit(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found (the test's anchor moved)"
    path.write_text(text.replace(old, new, 1))
    return text


@pytest.mark.parametrize("path, old, new, stale, fresh", [
    # the DEXTER library config (the dexter section's defaults): the explain stages and reasoning
    ("dexter/config.py", "tau: float = 1.0", "tau: float = 2.0", {"explain", "reason"},
     {"prepare", "train_erm", "label", "retrain", "report"}),
    # the trainer's config (the dro section's loss defaults): every stage that trains
    ("dro/config.py", "eta: float = 0.01", "eta: float = 0.02", {"train_erm", "retrain"},
     {"explain", "reason"}),
    # the params schema of the dro section: labelling and retraining read it
    ("stages/params/dro.py", "temperature: float = Field(0.02", "temperature: float = Field(0.03",
     {"label", "retrain"}, {"explain", "train_erm", "prepare"}),
    # the dexter section's schema
    ("stages/params/dexter.py", "gradient_checkpointing: bool = False", "gradient_checkpointing: bool = True",
     {"explain", "reason"}, {"train_erm", "label", "retrain"}),
    # the dataset sections' schema (how classifiers are trained)
    ("stages/params/data.py", "epochs: int = Field(10, ge=1)", "epochs: int = Field(11, ge=1)",
     {"prepare", "train_erm", "label", "retrain"}, set()),
])
def test_editing_a_schema_default_marks_the_stages_that_read_it_stale(workspace, path, old, new, stale, fresh):
    original = _edit(workspace / path, old, new)
    try:
        now = _stale(workspace)
    finally:
        (workspace / path).write_text(original)
    assert stale <= now, f"editing {path} should make {sorted(stale - now)} stale too (stale: {sorted(now)})"
    assert not (fresh & now), f"editing {path} should leave {sorted(fresh & now)} alone"
    assert _stale(workspace) == set()
