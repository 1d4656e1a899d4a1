"""Several processes (``torchrun``): process group, one device per process, batch statistics over all ranks.

``torchrun --nproc-per-node N -m btnet_edge train-branches ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; each process trains on its share of the global batch (N x --batch-size), DDP
averages the gradients (NCCL on GPUs, gloo on CPUs). The branches' BatchNorm layers use the
statistics of the whole global batch (:class:`GlobalBatchNorm2d`, a SyncBatchNorm that also
runs on gloo), so N processes compute what one process does with the same global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The torchrun layout from the environment (one process when WORLD_SIZE is unset or 1)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK should be integers (torchrun sets them)") from None
    return World(rank, size, local)


def init_world(torch, device: str) -> tuple[World, str]:
    """Start the process group when there are several processes; returns (world, this process's device)."""
    world = world_from_env()
    if not world.distributed:
        return world, device
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {world.local_rank} but {torch.cuda.device_count()} CUDA devices: use "
                              "--nproc-per-node at most the number of GPUs, or --device cpu")
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(world.rank, world.size, world.local_rank, backend), device


def close_world(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def mean_over_ranks(torch, world: World, values):
    """The mean of a tensor over the ranks (the tensor itself with one process)."""
    if not world.distributed:
        return values
    import torch.distributed as dist

    values = values.clone()
    dist.all_reduce(values)
    return values / world.size


def global_batch_norm_class(torch):
    """A BatchNorm2d whose training statistics are those of the global batch (all ranks)."""
    nn = torch.nn

    class GlobalBatchNorm2d(nn.BatchNorm2d):
        """Train mode: mean and variance over every rank's batch (equal local batch sizes); eval mode: as BatchNorm2d.

        Two passes (mean, then centred squares) for accuracy; the sums are all-reduced with
        autograd so the gradients are those of the global batch too.
        """

        def forward(self, x):
            if not self.training:
                return super().forward(x)
            import torch.distributed as dist

            several = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
            world = dist.get_world_size() if several else 1
            xf = x.float()
            count = xf.numel() // xf.shape[1] * world

            def summed(t):
                total = t.sum(dim=(0, 2, 3))
                if several:
                    from torch.distributed.nn.functional import all_reduce

                    total = all_reduce(total)
                return total

            mean = summed(xf) / count
            centred = xf - mean[None, :, None, None]
            var = summed(centred * centred) / count
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.num_batches_tracked.add_(1)
                self.running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
                self.running_var.mul_(1 - momentum).add_(var.detach() * (count / max(1, count - 1)) * momentum)
            out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
            return out.to(x.dtype)

    return GlobalBatchNorm2d


def use_global_batch_norm(torch, modules) -> list:
    """Switch these BatchNorm2d modules to global statistics (same parameters and buffers); returns them."""
    cls = global_batch_norm_class(torch)
    changed = []
    for module in modules:
        if type(module) is torch.nn.BatchNorm2d and module.affine and module.track_running_stats:
            module.__class__ = cls
            changed.append(module)
    return changed


def restore_batch_norm(torch, modules) -> None:
    for module in modules:
        module.__class__ = torch.nn.BatchNorm2d
