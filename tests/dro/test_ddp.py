"""Retraining under DistributedDataParallel (2 CPU processes, gloo, launched by torchrun) equals one
process with the same global batch: the group-DRO weights and the model, within float tolerance.

Without the all-reduce of the per-group loss sums and counts each rank would update ``q`` from its own
half of the batch: ``q`` differs between the ranks and from the one-process run (this test fails so).
With batch norms (``bn``) each rank would normalise with its own half's statistics and keep its own
running statistics unless they are the global batch's (``dro.sync_bn``): the weights, the running
statistics and the accuracies then differ from one process (this case fails so).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def _env():
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{WORKER.parent}", "OMP_NUM_THREADS": "1"}


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.mark.parametrize(("method", "arch"), [("group_dro", "plain"), ("erm", "plain"), ("group_dro", "bn")])
def test_two_processes_match_one(tmp_path, method, arch):
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(WORKER), str(one), method, arch], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
          str(WORKER), str(two), method, arch], tmp_path)
    ref = torch.load(one / "rank0.pt", weights_only=False)
    ranks = [torch.load(two / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ref["steps"] == 7 * 3  # ceil(50 / 8) global batches per epoch
    for got in ranks:
        assert got["steps"] == ref["steps"]  # each rank steps once per global batch
        if method == "group_dro":
            np.testing.assert_allclose(got["q"].numpy(), ref["q"].numpy(), rtol=1e-5, atol=1e-7)
        for k, v in ref["model"].items():
            np.testing.assert_allclose(got["model"][k].numpy(), v.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
        for a, b in zip(got["history"], ref["history"], strict=True):
            assert a["train_acc"] == b["train_acc"] and a["val_acc"] == b["val_acc"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert got["resumed_from"] == 3  # the finished checkpoint (written by rank 0 only) is reused


def test_batch_that_cannot_be_split_is_a_clear_error():
    from dro.train import _check_divisible

    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        _check_divisible(50, 8, 3)
    with pytest.raises(ValueError, match="last batch of an epoch has 1 sample"):
        _check_divisible(49, 8, 2)
    _check_divisible(50, 8, 2)
