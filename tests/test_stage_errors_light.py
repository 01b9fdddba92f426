"""A params error is reported before the heavy stack (torch, diffusers, PIL) is imported.

Under load, importing torch took most of a minute; validating params.yaml takes well under a second. The
error handler used to import ``dro.data`` (and with it torch) just to know which exception types are user
errors. Checked with ``python -X importtime``, which lists every module the process imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "world_gates", "train_erm", "explain", "reason", "label", "retrain", "report")


@pytest.mark.parametrize("stage", STAGES)
def test_bad_params_key_is_one_line_without_importing_torch(stage, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synthetic"]["train"]["epochz"] = 3
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", f"stages.{stage}", "--params", str(bad)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    lines = proc.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    message = [line for line in lines if not line.startswith("import time:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message == [f"error: {bad}: synthetic.train.epochz: unknown key"], message
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "diffusers", "transformers", "PIL"))
    assert not heavy, f"imported before the error was reported: {heavy[:5]}"
    print(f"{stage}: error reported in {seconds:.2f} s")
