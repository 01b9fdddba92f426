"""The torchrun command the stages launch for ``processes > 1`` (no process is started here)."""

import sys

import pytest

from stages.launch import dist_info, torchrun_command
from stages.params import ParamsError, TorchrunSection, parse_params


def test_one_machine_is_standalone():
    cmd = torchrun_command("stages.explain", ["--params", "p.yaml"], 4, TorchrunSection(), python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--nproc-per-node", "4", "--standalone",
                   "--max-restarts", "0", "-m", "stages.explain", "--params", "p.yaml"]


def test_several_machines_meet_at_the_rendezvous():
    t = TorchrunSection(nnodes=3, node_rank=2, rdzv_endpoint="node0:29400", rdzv_id="audit")
    cmd = torchrun_command("stages.retrain", [], 8, t)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    joined = " ".join(cmd)
    assert ("--nproc-per-node 8 --nnodes 3 --node-rank 2 --rdzv-backend c10d --rdzv-endpoint node0:29400 "
            "--rdzv-id audit --max-restarts 0 -m stages.retrain") in joined
    assert "--standalone" not in cmd


def test_torchrun_settings_are_validated():
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        TorchrunSection(nnodes=2)
    with pytest.raises(ValueError, match="node_rank 2 must be below nnodes 2"):
        TorchrunSection(nnodes=2, node_rank=2, rdzv_endpoint="h:1")


def test_processes_must_be_positive():
    with pytest.raises(ParamsError, match="processes"):
        parse_params({"processes": 0, "models": {}})


def test_dist_info_reads_torchruns_environment():
    assert not dist_info({}).is_worker
    info = dist_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.is_worker) == (3, 4, 1, True)
