"""One trainer for ERM and group DRO, checkpointed every epoch and resumable.

The same loop trains the ERM classifier DEXTER audits, GroupDRO on true groups (the oracle row) and
GroupDRO on DEXTER's pseudo-groups. What a method may see is decided by the caller, through the group
arrays it passes: ``train_groups`` feed the DRO loss and the balanced sampler, ``val_groups`` feed
model selection (best validation worst-group accuracy; plain validation accuracy when no groups are
given). For DRO-DEXTER the caller passes pseudo-groups for both, so no true group label enters
training or selection.

Resuming: after every epoch ``last.pt`` (model, optimizer, DRO state ``q``, RNG states, history,
best-so-far) is written atomically, and the best weights go to ``best.safetensors`` (stamped with the
run's fingerprint and epoch; ``last.pt`` keeps the file's SHA-256, checked before the weights are loaded). The order of samples in epoch ``e`` is a pure function of (seed, e), so a
run killed at any point and rerun ends with the same weights as an uninterrupted run. Only an
INTERRUPTED run is resumed: a checkpoint written for different settings, data, initial weights, code or
device type (its fingerprint differs), or whose ``best.safetensors`` belongs to another run, is ignored;
and a FINISHED run is trained again unless it finished in the same stage invocation (``session``: an
id the stage keeps across an interrupted invocation and its reruns), so forcing a stage redoes its work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.fingerprint import code_digest, json_digest, module_dir
from common.io import atomic_write_json, atomic_writer
from common.progress import progress_bar
from dro.config import TrainConfig
from dro.evaluate import group_accuracies, worst_group_accuracy
from dro.group_dro import ERMLoss, GroupDROLoss, epoch_order
from dro.sources import InputSource, predict

_log = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.safetensors"


@dataclass
class TrainResult:
    best_epoch: int  # 1-based; the weights in the returned module are this epoch's
    best_score: float
    selection: str  # "val_worst_group" or "val_avg"
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0  # epochs already done when this call started


@dataclass(frozen=True)
class SplitData:
    """One split as the trainer sees it: inputs, labels, and the groups the method may see (or None)."""

    source: InputSource
    y: np.ndarray
    groups: np.ndarray | None = None
    num_groups: int = 0
    weights: np.ndarray | None = None  # per-sample weights (``repeat`` counts or ``reweight`` loss weights)

    def __post_init__(self) -> None:
        if len(self.source) != len(self.y):
            raise ValueError(f"{len(self.source)} inputs but {len(self.y)} labels")
        if self.weights is not None:
            if len(self.weights) != len(self.y):
                raise ValueError(f"{len(self.y)} labels but {len(self.weights)} sample weights")
            if not (np.asarray(self.weights) >= 0).all() or not np.asarray(self.weights).sum() > 0:
                raise ValueError("sample weights must be >= 0 and not all 0")
        if self.groups is not None:
            if len(self.groups) != len(self.y):
                raise ValueError(f"{len(self.y)} labels but {len(self.groups)} group ids")
            if (np.asarray(self.groups) < 0).any():
                raise ValueError("group ids must be known (>= 0) for every sample a method may see")
            if self.num_groups <= int(np.max(self.groups, initial=-1)):
                raise ValueError(f"num_groups={self.num_groups} but group id {int(np.max(self.groups))} occurs")


def _hash_arrays(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(b"none" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _hash_module(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _code_version() -> str:
    """Hash of the code that can change a run: every module of the ``dro`` package (trainer, losses,
    sources, image decoding and geometry, selection metrics), of ``common`` (the classifier archs and their
    preprocessing, the CLIP encoder, atomic writes) and of ``world`` (the synthetic world's renderer: its
    images are the training data), and torch's version (its kernels). A fixed bug must not resume a
    checkpoint made with the bug."""
    import common
    import dro
    import world

    return json_digest([code_digest(module_dir(m), extra=torch.__version__) for m in (dro, common, world)], 16)


def fingerprint(module: nn.Module, cfg: TrainConfig, train: SplitData, val: SplitData,
                device: torch.device | str = "cpu") -> str:
    """Identity of a run: training code, settings, device type, data, visible groups and the INITIAL weights."""
    parts = {
        "code": _code_version(),
        "cfg": cfg.identity(),
        "device": torch.device(device).type,
        "init": _hash_module(module),
        "train": [train.source.fingerprint(), _hash_arrays(train.y, train.groups), train.num_groups]
        + ([] if train.weights is None else [_hash_arrays(np.asarray(train.weights, dtype=np.float64))]),
        "val": [val.source.fingerprint(), _hash_arrays(val.y, val.groups), val.num_groups],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _validate(module: nn.Module, val: SplitData, device, batch_size: int) -> dict:
    pred = predict(module, val.source, device, batch_size)
    out = {"val_acc": float((pred == val.y).mean())}
    if val.groups is not None:
        acc = group_accuracies(pred, val.y, val.groups, val.num_groups)
        out["val_worst_group_acc"] = worst_group_accuracy(acc)
        out["val_group_acc"] = [None if np.isnan(a) else float(a) for a in acc]
    return out


def _rng_state() -> dict:
    """Global RNG states as tensors and plain values (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": list(random.getstate())}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _best_stamp(fp: str, epoch: int) -> dict[str, str]:
    return {"fingerprint": fp, "epoch": str(epoch)}


def _read_best_stamp(path: Path) -> dict[str, str] | None:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # missing or unreadable (safetensors raises its own error type): not this run's
        return None
    return {k: meta[k] for k in ("fingerprint", "epoch") if k in meta}


def _best_weights(path: Path, fp: str, best: dict) -> dict[str, torch.Tensor] | None:
    """The weights in ``path`` if it is exactly the file this run wrote for its best epoch: stamped with
    the run's fingerprint and epoch AND with the bytes whose SHA-256 the run recorded (a file overwritten,
    truncated or zeroed after the fact is not this run's, whatever its stamp says); else None. The bytes
    are read once, so what is checked is what is loaded."""
    from safetensors.torch import load

    if _read_best_stamp(path) != _best_stamp(fp, best["epoch"]):
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != best.get("sha256"):
        return None
    return load(data)


def _why_not_resume(state: dict, fp: str, cfg: TrainConfig, best_path: Path, session: str | None) -> str | None:
    """None when ``state`` may be resumed, else the reason (one clause for the log)."""
    if state.get("fingerprint") != fp:
        return "written for other settings, data, initial weights, code or device"
    if _best_weights(best_path, fp, state["best"]) is None:
        return f"{best_path.name} is not this run's best epoch"
    if state["epoch"] >= cfg.epochs and (session is None or state.get("session") != session):
        return "that run finished in an earlier invocation (a new invocation trains again)"
    return None


def _world() -> tuple[int, int]:
    """(world size, rank) of the process group this process joined; (1, 0) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _from_rank0(value, world: int):
    """Rank 0's ``value`` on every rank (itself when there is one process)."""
    if world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _check_divisible(n: int, batch_size: int, world: int) -> None:
    """Every rank must get a slice of every global batch, the same number of steps per epoch."""
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {world} processes (each takes an equal "
                         "slice of every batch)")
    if 0 < n % batch_size < world:
        raise ValueError(f"the last batch of an epoch has {n % batch_size} sample(s), fewer than the {world} "
                         "processes: choose a batch_size that leaves 0 or at least that many")


def _rank_slices(order: np.ndarray, batch_size: int, rank: int, world: int) -> tuple[np.ndarray, list[int]]:
    """Rank ``rank``'s part of every global batch of ``order`` (contiguous, equal for full batches) as one
    order that chunks of ``batch_size // world`` split batch by batch, and the global batches' sizes."""
    if world == 1:
        return order, [len(order[s:s + batch_size]) for s in range(0, len(order), batch_size)]
    parts, sizes = [], []
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        parts.append(np.array_split(batch, world)[rank])
        sizes.append(len(batch))
    return np.concatenate(parts), sizes


def _sum_over_ranks(loss_sum: float, correct: int, seen: int, device) -> tuple[float, int, int]:
    import torch.distributed as dist

    t = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]), int(t[1]), int(t[2])


def _global_batchnorm(module: nn.Module, device) -> nn.Module:
    """``module`` with batch norms over the global batch (several processes): torch's SyncBatchNorm on CUDA,
    :class:`dro.sync_bn.GlobalBatchNorm` elsewhere (SyncBatchNorm raises for CPU inputs). Without it every
    rank would normalise with its own slice's statistics: another function than one process computes."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)  # replaces the children in place
    from dro.sync_bn import convert_global_batchnorm, has_batchnorm

    return convert_global_batchnorm(module, _stats_group()) if has_batchnorm(module) else module


_STATS_GROUP = None


def _stats_group():
    """A process group of its own for the batch-norm statistics (made once, by every rank together)."""
    global _STATS_GROUP
    if _STATS_GROUP is None:
        import torch.distributed as dist

        _STATS_GROUP = dist.new_group()
    return _STATS_GROUP


def _ddp(module: nn.Module, device) -> nn.Module:
    """``module`` under DistributedDataParallel (its batch norms already global, ``_global_batchnorm``)."""
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    if device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[device.index])
    return DistributedDataParallel(module)


def train(
    module: nn.Module,
    train_data: SplitData,
    val_data: SplitData,
    cfg: TrainConfig,
    ckpt_dir: Path | str,
    *,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = _log.info,
    on_batch: Callable[[int, int], None] | None = None,
    session: str | None = None,
) -> TrainResult:
    """Train ``module`` in place, resuming from ``ckpt_dir`` if an unfinished checkpoint of the same
    fingerprint is there, and leave it holding the weights of the selected (best validation) epoch.

    A finished checkpoint of the same fingerprint is reused (no epoch run) only when it was written under
    the same ``session``: a stage's id that survives an interruption (``stages.common.stage_session``), so a
    rerun after a crash skips the runs already done while a new invocation (``dvc repro -f``) trains again.
    ``on_batch(epoch, step)`` is called after every optimiser step (progress bars, tests that
    interrupt a run)."""
    from safetensors.torch import save

    ckpt_dir = Path(ckpt_dir)
    module.to(device)
    world, rank = _world()
    if world > 1:  # before the optimizer takes the parameters
        module = _global_batchnorm(module, device)
    if torch.device(device).type == "cuda":  # resume == uninterrupted needs deterministic kernels
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    if cfg.method == "group_dro" and train_data.groups is None:
        raise ValueError("group DRO needs training groups")
    fp = fingerprint(module, cfg, train_data, val_data, device)
    optimizer = _optimizer(module, cfg)
    if cfg.method == "group_dro":
        counts = np.bincount(train_data.groups, minlength=train_data.num_groups)
        loss_fn: GroupDROLoss | ERMLoss = GroupDROLoss(
            counts, eta=cfg.eta, adjustment=cfg.adjustment, normalize_loss=cfg.normalize_loss, device=device)
    else:
        loss_fn = ERMLoss()
    if cfg.reweight and train_data.weights is None:
        raise ValueError("reweight needs per-sample weights")
    if cfg.sampler == "repeat" and train_data.weights is None:
        raise ValueError("the repeat sampler needs per-sample repeat counts")
    if cfg.sampler == "group_balanced" and train_data.groups is None:
        raise ValueError("group-balanced sampling needs training groups")
    selection = "val_worst_group" if val_data.groups is not None else "val_avg"
    net: nn.Module = module
    if world > 1:
        _check_divisible(len(train_data.y), cfg.batch_size, world)
        net = _ddp(module, device)
        loss_fn.distributed = True

    start_epoch, history, best = 0, [], {"epoch": 0, "score": -1.0}
    last = ckpt_dir / LAST
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        why_not = _why_not_resume(state, fp, cfg, ckpt_dir / BEST, session)
        if why_not is None:
            module.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            loss_fn.load_state_dict(state["loss"])
            _set_rng_state(state["rng"])
            start_epoch, history, best = state["epoch"], state["history"], state["best"]
            log(f"resuming from {last} after epoch {start_epoch}/{cfg.epochs}")
        else:
            log(f"ignoring checkpoint {last}: {why_not}; training from epoch 1")

    balanced = (cfg.method == "group_dro" and cfg.balanced_sampling) if cfg.sampler == "default" \
        else cfg.sampler == "group_balanced"
    repeats = np.asarray(train_data.weights, dtype=np.int64) if cfg.sampler == "repeat" else None
    if repeats is not None and not np.array_equal(repeats, np.asarray(train_data.weights)):
        raise ValueError("the repeat sampler needs integer repeat counts")
    n = len(train_data.y)
    y_all = torch.from_numpy(np.asarray(train_data.y, dtype=np.int64))
    g_all = None if train_data.groups is None else torch.from_numpy(np.asarray(train_data.groups, dtype=np.int64))
    w_all = torch.from_numpy(np.asarray(train_data.weights, dtype=np.float32)) if cfg.reweight else None
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        module.train()
        order = epoch_order(n, cfg.seed, epoch, groups=train_data.groups, balanced=balanced, repeats=repeats)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = progress_bar(desc=f"epoch {epoch}/{cfg.epochs}", total=-(-len(order) // cfg.batch_size),
                           unit="batch", leave=False)  # within an epoch; each epoch ends with a log line
        rank_order, global_sizes = _rank_slices(order, cfg.batch_size, rank, world)
        batches = train_data.source.iterate(rank_order, cfg.batch_size // world, device)
        for step, ((idx, x), global_size) in enumerate(zip(batches, global_sizes, strict=True)):
            ti = torch.from_numpy(idx)
            yb = y_all[ti].to(device)
            logits = net(x)
            per_sample = F.cross_entropy(logits, yb, reduction="none")
            if w_all is not None:
                per_sample = per_sample * w_all[ti].to(device)
            loss = loss_fn(per_sample, g_all[ti].to(device) if g_all is not None else None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) / world * global_size  # the ranks' shares add up to the batch's
            correct += int((logits.detach().argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(1)
            if on_batch is not None:
                on_batch(epoch, step)
        bar.close()
        if world > 1:
            loss_sum, correct, seen = _sum_over_ranks(loss_sum, correct, seen, device)
        row = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)}
        row.update(_validate(module, val_data, device, cfg.eval_batch_size))
        if isinstance(loss_fn, GroupDROLoss):
            row["q"] = [float(v) for v in loss_fn.q]
        history.append(row)
        score = row["val_worst_group_acc"] if selection == "val_worst_group" else row["val_acc"]
        # Under DDP rank 0 decides and writes: the ranks' BatchNorm buffers (and so their validation
        # scores and serialised weights) may differ in the last bits; the file and its digest are rank 0's.
        improved, score = _from_rank0((score > best["score"] or cfg.keep == "last", score), world)
        if improved:
            digest = None
            if rank == 0:
                data = save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                            metadata=_best_stamp(fp, epoch))
                digest = hashlib.sha256(data).hexdigest()
                with atomic_writer(ckpt_dir / BEST, "wb") as f:
                    f.write(data)
            best = {"epoch": epoch, "score": float(score), "sha256": _from_rank0(digest, world)}
        log(f"epoch {epoch}/{cfg.epochs} loss {row['train_loss']:.4f} train_acc {row['train_acc']:.3f} "
            f"val_acc {row['val_acc']:.3f}"
            + (f" val_wg {row['val_worst_group_acc']:.3f}" if "val_worst_group_acc" in row else ""))
        state = {
            "fingerprint": fp, "session": session, "epoch": epoch, "model": module.state_dict(),
            "optimizer": optimizer.state_dict(), "loss": loss_fn.state_dict(), "rng": _rng_state(),
            "history": history, "best": best, "config": asdict(cfg),
        }
        if rank == 0:
            with atomic_writer(last, "wb") as f:
                torch.save(state, f)
        _barrier(world)  # the other ranks read these files at the end

    weights = _best_weights(ckpt_dir / BEST, fp, best)
    if weights is None:  # another process wrote it, or it was changed after this run wrote it
        raise RuntimeError(f"{ckpt_dir / BEST} is not epoch {best['epoch']} of this run: was the same checkpoint "
                           "folder used by two runs at once, or the file changed?")
    module.load_state_dict(weights)
    module.eval()
    if rank == 0:
        atomic_write_json(ckpt_dir / "history.json", {"fingerprint": fp, "best": best, "history": history})
    _barrier(world)
    return TrainResult(best_epoch=best["epoch"], best_score=best["score"], selection=selection,
                       history=history, resumed_from=start_epoch)
