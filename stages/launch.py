"""Running a stage as several processes with torchrun (PyTorch's own launcher; nothing home-made).

A stage that honours ``processes`` calls :func:`launch` when ``processes > 1`` and it is not yet a
torchrun worker: that re-runs the same stage module under ``python -m torch.distributed.run`` (the
``torchrun`` command, from the same Python) and waits. torchrun starts ``processes`` workers on this
machine (``--standalone``, or ``--nnodes``/``--rdzv-*`` from ``params.torchrun`` for several machines),
stops them all when one dies, and exits non-zero then, so the stage fails and its rerun resumes.
The launching process does the cheap single-process work before (checks, a work folder) and after (gathering)
the workers.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place among the workers (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_worker(self) -> bool:
        """True in a process torchrun started (its environment carries RANK and WORLD_SIZE)."""
        return self.world_size > 1


def dist_info(env: dict[str, str] | None = None) -> DistInfo:
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return DistInfo()
    return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))


def torchrun_command(module: str, args: Sequence[str], processes: int, torchrun, python: str | None = None
                     ) -> list[str]:
    """The torchrun command line that runs ``python -m module args`` in ``processes`` workers per node.

    ``torchrun``: the params' ``torchrun`` section (nnodes, node_rank, rdzv_endpoint, rdzv_id).
    ``--max-restarts 0``: a dead worker ends the launch (the stage's rerun resumes from its files instead).
    """
    cmd = [python or sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    if torchrun.nnodes == 1 and not torchrun.rdzv_endpoint:
        cmd.append("--standalone")
    else:
        cmd += ["--nnodes", str(torchrun.nnodes), "--node-rank", str(torchrun.node_rank),
                "--rdzv-backend", "c10d", "--rdzv-endpoint", torchrun.rdzv_endpoint, "--rdzv-id", torchrun.rdzv_id]
    return [*cmd, "--max-restarts", "0", "-m", module, *args]


class LaunchFailed(RuntimeError):
    """torchrun exited non-zero (a worker failed or was killed)."""


def launch(module: str, args: Sequence[str], processes: int, torchrun) -> None:
    """Run ``module`` under torchrun and wait; :class:`LaunchFailed` when it fails."""
    cmd = torchrun_command(module, args, processes, torchrun)
    log.info("launching: " + " ".join(cmd))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    code = subprocess.call(cmd, env=env)
    if code != 0:
        raise LaunchFailed(f"torchrun exited with status {code}: a worker failed (see its output above); "
                           "rerun the stage to resume from the finished work")


def init_process_group(device) -> None:
    """Join the workers' process group: NCCL for CUDA devices, gloo otherwise (the CPU tests)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def worker_device(device, info: DistInfo):
    """A worker's device: ``cuda`` becomes ``cuda:<local rank>`` (one GPU per process)."""
    import torch

    if device.type == "cuda" and info.is_worker:
        return torch.device("cuda", info.local_rank)
    return device


__all__ = ["DistInfo", "LaunchFailed", "dist_info", "init_process_group", "launch", "torchrun_command",
           "worker_device"]
