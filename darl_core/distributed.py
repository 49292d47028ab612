"""Data-parallel training of one stage over several processes started by ``accelerate launch``.

    accelerate launch --multi_gpu --num_processes 4 -m darl_core train --project NAME --stage ft

The stage loop stays one loop. Every process walks the same batch order (a pure function of seed and
epoch), takes its slice of each global batch (``rows[rank::world]``), and before the optimiser step
the gradients are summed across processes in one flattened all-reduce. Each process scales its mean
loss by its share of the global batch, so N processes make the update one process would make with
the same ``batch_size`` (exactly for a plain mean loss; class weights and DPO pairs normalise per
slice, so those differ by rounding-level amounts). Rank 0 alone writes files (resume points,
checkpoint, metrics) and the database row; the others wait at a barrier and read what it wrote.

The launcher (``accelerate launch --multi_gpu``, which runs torchrun; or torchrun itself) sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; ``context()`` joins the process group from them (NCCL on
GPUs, gloo on CPUs; accelerate's own ``PartialState`` reports a gloo group on CPUs as "not distributed",
so it is not used) and ``settings.torch_device`` gives each process ``cuda:LOCAL_RANK``. Without a
launcher (``WORLD_SIZE`` unset or 1) every call here is a no-op. ``DARL_DIST_TIMEOUT_MIN`` (default
180) bounds a wait at a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import torch


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def shard(self, rows):  # noqa: ANN001, ANN201 - numpy row indices in, this process's slice out
        return rows[self.rank::self.world] if self.active else rows

    def sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum each tensor across processes, in place, with one all-reduce of their concatenation."""
        if not self.active or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        torch.distributed.all_reduce(flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def agree(self, flag: bool, device: torch.device | str = "cpu") -> bool:
        """Rank 0's answer, on every process (a cancel request must stop all of them at the same step)."""
        if not self.active:
            return flag
        t = torch.tensor([1 if flag else 0], device=device)
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@lru_cache(maxsize=1)
def context() -> Context:
    """This process's place in the launch; the process group is created on first call."""
    if world_size() <= 1:
        return Context()
    import torch.distributed as td

    if not td.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        # Helpers wait at barriers while rank 0 scores val, picks and saves: allow hours, not the default minutes.
        minutes = float(os.environ.get("DARL_DIST_TIMEOUT_MIN", "180"))
        td.init_process_group(backend=backend, timeout=timedelta(minutes=minutes))
    return Context(rank=td.get_rank(), world=td.get_world_size())


def local_rank() -> int | None:
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value not in (None, "") and world_size() > 1 else None
