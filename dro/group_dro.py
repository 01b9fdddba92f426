"""Group DRO (Sagawa et al., ICLR 2020) as a loss object with explicit state, plus ERM and a balanced sampler.

docs/METHOD.md section 4, per batch:

1. ``l_g``: mean per-sample loss of group g in the batch. A group absent from the batch has
   ``l_g = 0`` (as in the reference code: its weight then only moves through the adjustment term and
   the renormalisation).
2. adjusted ``a_g = l_g + C / sqrt(n_g)`` (``n_g`` = training count of group g; groups with
   ``n_g = 0`` never occur and get no adjustment), optionally normalised to sum 1.
3. ``q_g <- q_g * exp(eta * a_g)``, renormalised (``q`` starts uniform).
4. robust loss ``= sum_g q_g * l_g`` with the NEW ``q`` and the UNADJUSTED ``l_g``. (The reference
   code adds the adjustment in place and so back-propagates the adjusted losses; docs/METHOD.md follows
   the paper's definition instead.)

Several processes (DistributedDataParallel, each rank a slice of the global batch): ``l_g`` must be the
mean over the GLOBAL batch, so the per-group loss sums and counts are all-reduced before step 1 (else
every rank updates ``q`` from its own slice and the ranks' ``q`` drift apart). The differentiable part
is rank r's share ``sum_g q_g * S_g^r / n_g`` (``S_g^r`` its slice's loss sum of group g, ``n_g`` the
global count), times the world size because DDP averages gradients over ranks: the gradient is then
exactly that of the global-batch loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def group_mean_losses(per_sample: torch.Tensor, groups: torch.Tensor, num_groups: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss per group (0 where the group is absent) and the number of samples per group."""
    if per_sample.shape != groups.shape:
        raise ValueError(f"losses {tuple(per_sample.shape)} and groups {tuple(groups.shape)} differ")
    if len(groups) and (int(groups.min()) < 0 or int(groups.max()) >= num_groups):
        raise ValueError(f"group ids must lie in [0, {num_groups}); got {groups.min()}..{groups.max()}")
    sums, counts = group_sums(per_sample, groups, num_groups)
    return sums / counts.clamp(min=1), counts


def group_sums(per_sample: torch.Tensor, groups: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss sum and number of samples per group."""
    one_hot = torch.nn.functional.one_hot(groups, num_groups).to(per_sample.dtype)  # B x G
    return one_hot.t() @ per_sample, one_hot.sum(0)


class GroupDROLoss:
    """Stateful robust loss. Call it with per-sample losses and group ids; it updates ``q`` and returns
    the robust loss. ``state_dict``/``load_state_dict`` make a resumed run continue with the same ``q``."""

    def __init__(
        self,
        group_counts: Sequence[int] | np.ndarray | torch.Tensor,
        *,
        eta: float = 0.01,
        adjustment: float | Sequence[float] = 0.0,
        normalize_loss: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        counts = torch.as_tensor(np.asarray(group_counts), dtype=torch.float32, device=device)
        if counts.ndim != 1 or len(counts) < 1:
            raise ValueError("group_counts must be a non-empty 1-D sequence")
        if eta <= 0:
            raise ValueError(f"eta must be positive, got {eta}")
        self.num_groups = len(counts)
        self.eta = float(eta)
        self.normalize_loss = bool(normalize_loss)
        adj = torch.as_tensor(adjustment, dtype=torch.float32, device=device).expand(self.num_groups)
        if bool((adj < 0).any()):
            raise ValueError("adjustment C must be >= 0")
        # C / sqrt(n_g), 0 for groups without training data (they never appear in a batch).
        self.adjust = torch.where(counts > 0, adj / counts.clamp(min=1).sqrt(), torch.zeros_like(adj))
        self.q = torch.full((self.num_groups,), 1.0 / self.num_groups, device=device)
        self.distributed = False  # set by the trainer under DDP: sums and counts are all-reduced

    def __call__(self, per_sample: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            return self._distributed_call(per_sample, groups)
        losses, _ = group_mean_losses(per_sample, groups, self.num_groups)
        return losses @ self._update_q(losses.detach())

    def _distributed_call(self, per_sample: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        local_sums, local_counts = group_sums(per_sample, groups, self.num_groups)
        stats = torch.cat([local_sums.detach(), local_counts]).contiguous()
        dist.all_reduce(stats)
        sums, counts = stats[: self.num_groups], stats[self.num_groups:]
        q = self._update_q(sums / counts.clamp(min=1))
        return (local_sums / counts.clamp(min=1)) @ q * dist.get_world_size()

    def _update_q(self, losses: torch.Tensor) -> torch.Tensor:
        """Steps 2-3 on the (detached) group losses of the whole batch; returns the new ``q``."""
        adjusted = losses + self.adjust
        if self.normalize_loss:
            adjusted = adjusted / adjusted.sum().clamp(min=1e-12)
        q = self.q * torch.exp(self.eta * adjusted)
        self.q = q / q.sum()
        return self.q

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"q": self.q.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        q = state["q"]
        if q.shape != self.q.shape:
            raise ValueError(f"saved q has {len(q)} groups, this loss has {self.num_groups}")
        self.q = q.to(self.q.device, self.q.dtype).clone()


class ERMLoss:
    """The plain mean: ERM through the same trainer interface (no state). Under DDP, rank r's share of the
    global mean (its slice's sum over the global batch size, times the world size: DDP averages)."""

    def __init__(self) -> None:
        self.distributed = False

    def __call__(self, per_sample: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        if self.distributed:
            import torch.distributed as dist

            n = torch.tensor([float(len(per_sample))], device=per_sample.device)
            dist.all_reduce(n)
            return per_sample.sum() / n[0] * dist.get_world_size()
        return per_sample.mean()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


def epoch_order(
    n: int, seed: int, epoch: int, *, groups: np.ndarray | None = None, balanced: bool = False,
    repeats: np.ndarray | None = None,
) -> np.ndarray:
    """The sample indices of one epoch, a pure function of (seed, epoch): a resumed run repeats exactly.

    ``balanced``: draw ``n`` indices with replacement, each with probability proportional to
    ``1 / n_{group}`` (every group equally likely per draw, as the reference code's weighted sampler).
    ``repeats``: a permutation of the multiset in which index i occurs ``repeats[i]`` times (JTT's
    upsampled error set; the epoch then has ``sum(repeats)`` samples).
    Otherwise a plain permutation.
    """
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    if repeats is not None:
        if balanced or len(repeats) != n or (np.asarray(repeats) < 0).any():
            raise ValueError("repeats needs one count >= 0 per sample and no balanced sampling")
        return rng.permutation(np.repeat(np.arange(n), repeats))
    if not balanced:
        return rng.permutation(n)
    if groups is None or len(groups) != n:
        raise ValueError("balanced sampling needs one group id per sample")
    if (groups < 0).any():
        raise ValueError("balanced sampling needs a known group for every sample")
    counts = np.bincount(groups)
    weights = 1.0 / counts[groups]
    return rng.choice(n, size=n, replace=True, p=weights / weights.sum())


def batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]
