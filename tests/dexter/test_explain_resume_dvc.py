"""A killed ``explain`` under the real ``dvc repro``: the finished runs must survive, with one process
and with two torchrun workers of which one is killed (``kill -9`` of a rank).

DVC deletes a stage's outputs before it reruns the stage, so runs kept only in ``outputs/dexter`` are lost
to a kill. The workspace is a temporary copy of the project's pipeline (the real ``dvc.yaml``,
the committed world models) with a short DEXTER setting; the ERM classifier is a random one saved in place
(``dvc repro -s`` runs the explain stage alone).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORLD = REPO / "data" / "world"
STEPS = 40  # per run; both runs take every step (no early stop) so a kill lands inside run 1

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (WORLD / "sd").is_dir(), reason="world models not trained yet (data/world)"),
]


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": "",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture
def workspace(tmp_path) -> Path:
    import torch

    from common.classifier import build_classifier, save_classifier

    ws = tmp_path / "ws"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("stages", "common", "world", "dexter", "dro"):
        shutil.copytree(REPO / name, ws / name, ignore=ignore)
    shutil.copytree(WORLD, ws / "data" / "world", ignore=ignore)
    (ws / "data" / "world4").mkdir()  # a dependency in dvc.yaml; the small preset does not read it
    (ws / "data" / "world4" / "README").write_text("not used by the small preset\n")
    shutil.copy(REPO / "dvc.yaml", ws / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["device"] = "cpu"
    params["synthetic"]["preset"] = "small"  # the committed small world's models (the default is the rich world)
    short = dict(runs_per_class=2, steps=STEPS, min_steps=STEPS, early_stop=0)
    params["dexter"].update(classes=[0, 1], **short)
    params["synthetic"].setdefault("dexter", {}).update(short)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    torch.manual_seed(0)
    save_classifier(build_classifier("small_cnn", ("circle", "square"), 32), ws / "outputs" / "erm")
    _run(["dvc", "init", "--no-scm", "-q"], ws)
    _run(["dvc", "config", "core.analytics", "false"], ws)
    return ws


def _finished_run_0(ws: Path, class_folder: str) -> Path | None:
    """Where run 0's completion marker of the class is, wherever the stage keeps unfinished classes."""
    found = [p for p in (ws / "outputs").glob(f"**/{class_folder}/run_0/result.json") if "erm" not in p.parts]
    return found[0] if found else None


def _worker_pid(ws: Path, rank: int) -> int | None:
    """The torchrun worker of ``rank`` running in ``ws`` (read from /proc; torchrun gives each worker its
    own session, so the stage's process group does not hold them)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if Path(os.readlink(d / "cwd")) != ws:
                continue
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"WORLD_SIZE=2" in env and b"TORCHELASTIC_RUN_ID" in b" ".join(env):
            return int(d.name)
    return None


@pytest.mark.parametrize("processes", [1, 2])
def test_killed_explain_stage_reuses_its_finished_runs_under_dvc_repro(workspace, processes):
    """processes 1: the stage is killed; 2: only the worker of rank 1 (class 1) is, torchrun stops rank 0."""
    if processes > 1:
        params = yaml.safe_load((workspace / "params.yaml").read_text())
        (workspace / "params.yaml").write_text(yaml.safe_dump({**params, "processes": processes}, sort_keys=False))
    folder = "001_square" if processes > 1 else "000_circle"
    repro = [sys.executable, "-m", "dvc", "repro", "-s", "explain"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(repro, cwd=workspace, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        while (marker := _finished_run_0(workspace, folder)) is None:
            assert proc.poll() is None, "the stage ended before run 0 finished"
            assert time.perf_counter() - t0 < 300, "run 0 never finished"
            time.sleep(0.05)
        stamp = marker.stat().st_mtime_ns
        # mid run 1: what a preempted GPU job or an OOM kill does
        if processes > 1:
            os.kill(_worker_pid(workspace, 1), signal.SIGKILL)
            assert proc.wait(timeout=120) != 0, "the stage must fail when a worker dies"
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_after = time.perf_counter() - t0
    assert not list((workspace / "outputs").glob(f"**/{folder}/run_1/result.json")), "run 1 finished before the kill"

    import resource

    t1, cpu1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    rerun = _run(repro, workspace)
    cpu2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rerun_s, rerun_cpu = time.perf_counter() - t1, cpu2.ru_utime + cpu2.ru_stime - cpu1.ru_utime - cpu1.ru_stime
    dexter_s = json.loads((workspace / "metrics/dexter.json").read_text())["seconds_this_invocation"]
    print(f"\nkilled after {killed_after:.1f} s (run 0 done); rerun under dvc repro: {rerun_s:.1f} s wall, "
          f"{rerun_cpu:.1f} s CPU, {dexter_s:.1f} s in DEXTER's loop")

    class_dir = workspace / "outputs" / "dexter" / folder
    keywords = json.loads((class_dir / "keywords.json").read_text())
    assert [r["run"] for r in keywords["runs"]] == [0, 1]
    assert (class_dir / "run_0" / "result.json").stat().st_mtime_ns == stamp, "run 0 was computed again"
    assert f"{folder}: reusing 1 finished run" in rerun.stdout + rerun.stderr
    assert set(json.loads((workspace / "metrics/dexter.json").read_text())["classes"]) == {"circle", "square"}
    assert _run(["dvc", "status", "explain"], workspace).stdout.count("changed") == 0
