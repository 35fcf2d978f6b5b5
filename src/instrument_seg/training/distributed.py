"""Data-parallel training across the processes torchrun starts (PyTorch DDP).

    torchrun --standalone --nproc-per-node 2 -m instrument_seg train --data DIR --out RUN ...

torchrun gives each process ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
``MASTER_PORT``); :func:`session` reads them, and without them (or with ``WORLD_SIZE=1``) every
method of :class:`Distributed` is a no-op, so ``train()`` is the single-process path unchanged.
The backend is NCCL when training on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on
the CPU.

What a step does (:mod:`instrument_seg.training.loop` calls the hooks marked ``ddp``):

- **Same batches.** Every process draws the same global batch of frame pairs for a step (the
  seeded ``_batch_order``) and takes its own ``batch_size / world_size`` consecutive pairs of it
  (:meth:`Distributed.shard`), so the processes together see exactly the pairs single-process
  training sees at that step. ``train.batch_size`` is the global batch; it must be divisible by
  the number of processes.
- **Same gradients.** Every term of the loss is a mean over the pairs of the batch, so the mean
  of the per-process losses is the single-process loss; DDP averages the gradients, which is the
  gradient of that mean. The logged losses are averaged the same way (:meth:`mean_parts`).
- **Same BatchNorm.** A BatchNorm layer normalises over its whole input; with plain DDP each
  process would normalise over its own shard only. :meth:`Distributed.wrap` therefore turns
  every BatchNorm into a synchronised one whose statistics are those of the global batch:
  ``torch.nn.SyncBatchNorm`` on GPUs, :class:`SyncBatchNorm2d` on the CPU (PyTorch's runs on
  GPUs only). Checkpoints keep the plain ``UNet`` state-dict keys.
- **One writer.** Rank 0 alone writes the run directory (config, ``loss.csv``, checkpoints,
  summary; :meth:`run_file`) and shows progress bars; the CLI prints from rank 0 only.
- **One preparation.** Rank 0 computes the cues and frozen features first (filling the on-disk
  cue cache and the run's feature cache) while the others wait, then the others build their
  copy of the training set from those caches (:meth:`main_first`).
- **One verdict on errors.** Each preparation step ends with every process telling the others
  whether it failed (:meth:`agree`): a bad frame found by any process stops all of them (the
  failed one with its own error, the others with :class:`PeerError`, ``process 1 of 2
  stopped: ...``) instead of leaving them waiting, and rank 0 prints one of these sentences. A
  diverged loss is seen by all processes at once because it is checked after averaging.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from instrument_seg.errors import InputError

T = TypeVar("T")

#: torchrun's variables read by :func:`from_env`.
ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")

#: How long processes wait for each other outside the training steps, e.g. for rank 0 to
#: compute the cues of a large dataset (PyTorch's default of 10 min is too short for that).
PREPARE_TIMEOUT = timedelta(hours=6)


class PeerError(InputError):
    """Another process of the launch failed; this one stops with its message."""


@dataclass
class Distributed:
    """This process's place in a launch (one process, world size 1, when not launched).

    Attributes:
        world_size: Number of processes.
        rank: This process's index, 0 ... world_size - 1.
        local_rank: Index on this machine (its GPU with CUDA).
        device: Where this process trains (``cuda:LOCAL_RANK`` under NCCL).
        backend: ``nccl`` or ``gloo`` once a process group is open, else None.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    _control: Any = None  # gloo group for agreement (long timeout: waits for preparation)
    _step: Any = None  # gloo group for the per-step averages (default timeout)
    _sync: Any = None  # gloo group of the CPU SyncBatchNorm layers

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    # --- preparation -------------------------------------------------------------------------

    def agree(self, error: BaseException | None = None) -> None:
        """Every process says whether it failed; if any did, every process raises.

        Also a barrier: no process returns before all have called it.

        Args:
            error: This process's failure, or None.

        Raises:
            The process's own ``error``, else :class:`PeerError` with the first failed
            process's message.
        """
        if not self.enabled:
            if error is not None:
                raise error
            return
        message = None
        if error is not None:
            message = str(error) if isinstance(error, InputError) else repr(error)
        gathered: list[str | None] = [None] * self.world_size
        dist.all_gather_object(gathered, message, group=self._control)
        if error is not None:
            raise error
        for rank, text in enumerate(gathered):
            if text is not None:
                raise PeerError(f"process {rank} of {self.world_size} stopped: {text}")

    def main_first(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs ``fn`` on rank 0, then (once it succeeded) on the other processes.

        For work whose results rank 0 caches on disk (cues, features): the others then read
        them instead of computing them again. Without a launch, just ``fn(*args, **kwargs)``.

        Raises:
            Whatever ``fn`` raised here, or :class:`PeerError` when it failed elsewhere.
        """
        if not self.enabled:
            return fn(*args, **kwargs)
        self.agree()  # nobody is still checking the run directory when rank 0 writes to it
        result: Any = None
        for turn in (True, False):
            error = None
            if self.is_main == turn:
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:  # every failure is shared, not only InputError
                    error = exc
            self.agree(error)
        return result

    # --- training ----------------------------------------------------------------------------

    def check_batch(self, batch: int) -> None:
        """Raises InputError unless ``batch`` pairs split evenly over the processes."""
        if batch % self.world_size:
            raise InputError(
                f"train.batch_size {batch} does not split over the {self.world_size} processes "
                f"of this launch (use a multiple of {self.world_size})"
            )

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This process's consecutive share of a step's global batch (all of it when alone)."""
        n = len(rows) // self.world_size
        return rows[self.rank * n : (self.rank + 1) * n] if self.enabled else rows

    def wrap(self, model: nn.Module) -> nn.Module:
        """Synchronised BatchNorm + DistributedDataParallel around ``model`` (on its device).

        The BatchNorm layers of ``model`` are replaced in place, sharing their parameters and
        buffers, so ``model.state_dict()`` and an optimizer over ``model.parameters()`` stay
        valid. Returns ``model`` itself when not launched.
        """
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            if converted is not model:
                raise TypeError("wrap() needs a model whose root is not a BatchNorm layer")
            return DistributedDataParallel(model, device_ids=[self.device.index])
        convert_sync_batchnorm(model, self._sync)
        return DistributedDataParallel(model)

    def mean_parts(self, parts: Mapping[str, float]) -> dict[str, float]:
        """The logged loss terms averaged over the processes (the global batch's values).

        A non-finite value on any process makes the average non-finite on all of them, so all
        processes stop at the same step when training diverges.
        """
        if not self.enabled:
            return dict(parts)
        keys = list(parts)
        values = torch.tensor([float(parts[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(values, group=self._step)
        return {k: float(v) / self.world_size for k, v in zip(keys, values.tolist(), strict=True)}

    def run_file(self, path: Path) -> Path:
        """``path`` on rank 0; ``os.devnull`` elsewhere, so only rank 0 writes run files."""
        return path if self.is_main else Path(os.devnull)


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"environment variable {name}={raw!r} is not an integer") from None


def from_env(environ: Mapping[str, str] | None = None) -> Distributed:
    """The launch described by torchrun's variables (world size 1 without them).

    Raises:
        InputError: a variable that is not an integer, or a rank outside the world.
    """
    environ = os.environ if environ is None else environ
    world = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    local = _env_int(environ, "LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InputError(f"RANK={rank}, LOCAL_RANK={local} do not fit WORLD_SIZE={world}")
    return Distributed(world_size=world, rank=rank, local_rank=local)


@contextmanager
def session(
    device: torch.device, environ: Mapping[str, str] | None = None
) -> Iterator[Distributed]:
    """Opens the process group of a torchrun launch for the duration of the block.

    Args:
        device: the device training asked for (``train.resolve_device``): CUDA selects NCCL
            and ``cuda:LOCAL_RANK``, the CPU gloo.
        environ: the environment to read (default ``os.environ``).

    Yields:
        This process's :class:`Distributed`; world size 1 (nothing opened) when not launched.

    Raises:
        InputError: bad torchrun variables, or more processes on this machine than GPUs.
    """
    env = os.environ if environ is None else environ
    ctx = from_env(env)
    ctx.device = device
    if not ctx.enabled:
        yield ctx
        return
    if device.type == "cuda":
        local_world = _env_int(env, "LOCAL_WORLD_SIZE", ctx.world_size)
        if local_world > torch.cuda.device_count():
            raise InputError(
                f"{local_world} processes per machine need as many GPUs, but "
                f"{torch.cuda.device_count()} are visible (lower --nproc-per-node)"
            )
        ctx.device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(ctx.device)
        ctx.backend = "nccl"
    else:
        ctx.backend = "gloo"
    # init_method env:// reads MASTER_ADDR / MASTER_PORT from os.environ
    missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if not (env.get(n) or os.environ.get(n))]
    if missing:
        raise InputError(
            f"WORLD_SIZE={ctx.world_size} but {' and '.join(missing)} not set: start "
            "distributed training with torchrun"
        )
    dist.init_process_group(
        ctx.backend, init_method="env://", world_size=ctx.world_size, rank=ctx.rank
    )
    try:
        ctx._control = dist.new_group(backend="gloo", timeout=PREPARE_TIMEOUT)
        ctx._step = dist.new_group(backend="gloo")
        if ctx.device.type == "cpu":
            ctx._sync = dist.new_group(backend="gloo")
        yield ctx
    finally:
        dist.destroy_process_group()


# --- BatchNorm synchronised over gloo (CPU) --------------------------------------------------


class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch normalisation with statistics over the inputs of every process of ``group``.

    Forward: global mean, then global biased variance (two all-reduces, two-pass for
    accuracy). Backward: the gradient of the *sum* of every process's loss with respect to this
    process's input, which needs the global sums of ``dy`` and ``dy * x_hat``; DDP's averaging
    of the parameter gradients then gives the gradient of the mean loss, as in
    ``torch.nn.SyncBatchNorm``.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, group: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dims = [0, *range(2, x.ndim)]
        shape = [1, -1] + [1] * (x.ndim - 2)
        stats = torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.shape[1]])])
        dist.all_reduce(stats, group=group)
        count = stats[-1].clone()
        mean = stats[:-1] / count
        centred = x - mean.view(shape)
        var = (centred * centred).sum(dims)
        dist.all_reduce(var, group=group)
        var = var / count
        invstd = torch.rsqrt(var + eps)
        x_hat = centred * invstd.view(shape)
        y = x_hat * weight.view(shape) + bias.view(shape)
        ctx.save_for_backward(x_hat, invstd, weight)
        ctx.count, ctx.group, ctx.shape, ctx.dims = count, group, shape, dims
        ctx.mark_non_differentiable(mean, var, count)
        return y, mean, var, count

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, *_unused: Any) -> tuple[Any, ...]:
        x_hat, invstd, weight = ctx.saved_tensors
        dims, shape = ctx.dims, ctx.shape
        sum_dy = dy.sum(dims)
        sum_dy_xhat = (dy * x_hat).sum(dims)
        both = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(both, group=ctx.group)
        g_dy, g_dy_xhat = both.chunk(2)
        dx = (weight * invstd).view(shape) * (
            dy - (g_dy / ctx.count).view(shape) - x_hat * (g_dy_xhat / ctx.count).view(shape)
        )
        return dx, sum_dy_xhat, sum_dy, None, None


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics span every process (any backend, CPU too).

    Outside training, or without an open process group, it is plain ``BatchNorm2d``. Running
    statistics are updated with the global mean and unbiased variance, as single-process
    BatchNorm over the global batch would update them. Affine layers only.
    """

    def __init__(self, *args: Any, group: Any = None, **kwargs: Any) -> None:
        """Args: as ``nn.BatchNorm2d``; ``group``: the process group (default: the world)."""
        super().__init__(*args, **kwargs)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size(self.group) == 1:
            return super().forward(x)
        self._check_input_dim(x)
        y, mean, var, count = _SyncBatchNormFunction.apply(
            x, self.weight, self.bias, self.eps, self.group
        )
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum
                if factor is None:
                    factor = 1.0 / float(self.num_batches_tracked)
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return y


def convert_sync_batchnorm(module: nn.Module, group: Any = None) -> nn.Module:
    """Replaces every ``nn.BatchNorm2d`` under ``module`` by :class:`SyncBatchNorm2d`, in place.

    The new layers share the old ones' parameters and buffers (same tensors), so optimizers and
    state-dict keys are unaffected.

    Raises:
        TypeError: ``module`` itself is a BatchNorm layer, or a BatchNorm layer is not affine.
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        raise TypeError("convert the model holding the BatchNorm layer, not the layer itself")
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            if not child.affine:
                raise TypeError(f"BatchNorm layer {name} is not affine")
            sync = SyncBatchNorm2d(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                track_running_stats=child.track_running_stats,
                group=group,
                device=child.weight.device,
            )
            sync.weight, sync.bias = child.weight, child.bias
            if child.track_running_stats:
                sync.running_mean = child.running_mean
                sync.running_var = child.running_var
                sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child, group)
    return module
