"""Batch norm over the GLOBAL batch when several CPU processes train one model (DDP on gloo).

Under DistributedDataParallel each rank runs its layers on its slice of the global batch, so a plain
batch norm normalises with the slice's mean and variance and updates its running statistics from the
slice: a different function (and different gradients) than one process on the whole batch, not a float
rounding difference. ``torch.nn.SyncBatchNorm`` fixes that on CUDA only (its ``forward`` raises for CPU
inputs: it needs the CUDA ``batch_norm_stats`` kernels). :class:`GlobalBatchNorm` does the same on any
device with plain tensor ops and two differentiable all-reduces (the per-channel sums and count, then the
per-channel sums of squared deviations from the global mean), so a model with batch norms trains under
DDP as under one process with the same global batch, up to float summation order.

Gradients: the all-reduce's backward all-reduces the incoming gradients, so rank r's backward receives
the derivative of every rank's loss through the shared statistics; with the trainer's losses (each rank's
share times the world size, DDP averaging the parameter gradients) the parameter gradient is the
global-batch loss's, as ``torch.nn.SyncBatchNorm`` computes it. The statistics use their own process
group so that they never interleave with DDP's gradient buckets.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward is the all-reduce (sum) of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A batch norm (any of 1-d, 2-d, 3-d) whose training-mode statistics are those of the batch of all
    ranks in ``group``. Same parameters, buffers and state-dict keys as the layer it replaces; in eval
    mode, or without a process group of several ranks, it is the plain batch norm."""

    def __init__(self, *args, group=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.group = group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-d input (batch, channels, ...), got {input.dim()}-d")

    def _world(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.group)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self._world() == 1:
            return super().forward(input)
        self._check_input_dim(input)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, c] + [1] * (input.dim() - 2)
        local_n = input.new_tensor([input.numel() // c])
        stats = _SumOverRanks.apply(torch.cat([input.sum(dims), local_n]), self.group)
        n = stats[c]
        mean = stats[:c] / n
        centred = input - mean.view(shape)
        var = _SumOverRanks.apply(centred.square().sum(dims), self.group) / n  # biased, as batch norm
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), float(n))
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        """As ``F.batch_norm`` in training: exponential (or, momentum None, cumulative) averages of the
        batch mean and the UNBIASED batch variance."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(var * (n / max(n - 1, 1)), alpha=factor)


def convert_global_batchnorm(module: nn.Module, group=None) -> nn.Module:
    """``module`` with every batch norm replaced (in place for children) by a :class:`GlobalBatchNorm`
    that shares its parameters and buffers; the root is returned (replaced if it is a batch norm
    itself). Call it before the optimizer takes the parameters (they are the same objects anyway)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, group=group)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_global_batchnorm(child, group))
    return module


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
