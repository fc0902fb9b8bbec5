"""The processes of one run under `accelerate launch` (or torchrun): every rank trains (the Trainer's DDP or
DeepSpeed), rank 0 alone writes the run directory, and evaluation is sharded across ranks and merged.

Launched alone (no WORLD_SIZE above 1) everything here is a no-op: one process is rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch

from llava_cit.util.errors import UserError

T = TypeVar("T")


DEFAULT_TIMEOUT_S = 1800  # torch's own default for a collective


def collective_timeout() -> timedelta:
    """How long a rank waits for the others in one collective before it fails with the collective's name
    (`LLAVA_CIT_DIST_TIMEOUT` seconds, torch's 30 minutes by default): a stuck rank stops the run, never hangs it."""
    raw = os.environ.get("LLAVA_CIT_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise UserError(f"LLAVA_CIT_DIST_TIMEOUT={raw!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or the only process (reads the launcher's environment; needs no process group)."""
    return int(os.environ.get("RANK", "0")) == 0


class Processes:
    """Rank, world size and the few collectives the runner needs (accelerate's, over NCCL or gloo)."""

    def __init__(self):
        self.state = None
        self.rank, self.world = 0, 1
        if launched_world_size() > 1:
            from accelerate import PartialState

            # on CPU (tests, laptops) the processes talk over gloo; on GPUs over NCCL, one device per rank
            self.state = PartialState(cpu=not torch.cuda.is_available(), timeout=collective_timeout())
            self.rank, self.world = self.state.process_index, self.state.num_processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def close(self) -> None:
        """End a finished run's process group together: every rank waits for the others, then leaves it."""
        if self.state is None or not torch.distributed.is_initialized():
            return
        self.barrier()
        torch.distributed.destroy_process_group()

    def shard(self, count: int) -> list[int]:
        """This rank's share of `count` items (every world-th, from its rank): balanced within one item."""
        return list(range(self.rank, count, self.world))

    def merge(self, count: int, mine: list[Any]) -> list[Any]:
        """Every rank's shard (from `shard`) put back in order, on every rank."""
        if not self.distributed:
            return list(mine)
        from accelerate.utils import gather_object

        pairs = gather_object([(self.rank, mine)])  # between this run's own processes, never from a file
        merged: list[Any] = [None] * count
        for rank, items in pairs:
            for index, item in zip(range(rank, count, self.world), items):
                merged[index] = item
        return merged

    def on_main(self, work: Callable[[], T]) -> T | None:
        """Run `work` on rank 0 only (a write to the run directory); every rank waits for it, and if it fails,
        every rank fails with its message instead of waiting forever. Returns its value on rank 0."""
        if not self.distributed:
            return work()
        from accelerate.utils import broadcast_object_list

        value, failure, message = None, None, [None]
        if self.is_main:
            try:
                value = work()
            except BaseException as err:  # noqa: BLE001 - re-raised below, after the other ranks are told
                failure, message = err, [f"{type(err).__name__}: {err}" if not isinstance(err, UserError) else str(err)]
        broadcast_object_list(message, from_process=0)
        if failure is not None:
            raise failure
        if message[0] is not None:
            raise UserError(f"rank 0 stopped: {message[0]}")
        return value
