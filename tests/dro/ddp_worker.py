"""One process of the DDP test (tests/dro/test_ddp.py): ``train`` on a tiny synthetic problem.

Run as a script (directly: one process; under torchrun: one rank of several). Writes
``<out>/rank<r>.pt`` with the final weights, the DRO weights ``q`` after the last step, the history and
what a second call (same session) resumed from.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dro.sources import TensorSource
from dro.train import SplitData, TrainConfig, train


def problem(n: int = 50):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 2, size=n)
    groups = (2 * y + rng.integers(0, 2, size=n)).astype(np.int64)
    groups[:3] = 3  # a rare group: its weight moves most
    return TensorSource.from_pixels(pixels), y, groups


def model(arch: str = "plain") -> nn.Module:
    """``plain``: no batch norm; ``bn``: a batch norm whose statistics must be the global batch's."""
    torch.manual_seed(0)
    if arch == "bn":
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                             nn.Flatten(), nn.Linear(16, 2))
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 2))


def main(out: Path, method: str = "group_dro", arch: str = "plain") -> None:
    import torch.distributed as dist

    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.set_num_threads(1)
    source, y, groups = problem()
    cfg = TrainConfig(method=method, epochs=3, batch_size=8, lr=0.05, optimizer="sgd", momentum=0.9, seed=0,
                      eta=0.5, adjustment=1.0)
    seen = []
    m = model(arch)
    split = SplitData(source, y, groups, 4)
    result = train(m, split, split, cfg, out / "ckpt", log=lambda s: None, session="s",
                   on_batch=lambda e, s: seen.append((e, s)))
    q = torch.load(out / "ckpt" / "last.pt", weights_only=True)["loss"].get("q")  # q after the last step
    again = train(model(arch), split, split, cfg, out / "ckpt", log=lambda s: None, session="s")
    torch.save({"model": m.state_dict(), "q": q, "history": result.history, "steps": len(seen),
                "resumed_from": again.resumed_from}, out / f"rank{rank}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
