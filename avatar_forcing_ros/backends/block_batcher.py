"""Runs the steady-state blocks that several sessions of one neural model ask for together as
one batch (sessions x guidance branches), for a generator serving several robots.

Each session asks from its own worker thread (`run` blocks until its latents are ready). The
first asker waits up to `wait_s` for the other registered sessions (their blocks fall due
together: the generator puts every session on one block grid), then runs what has arrived and
answers everyone: requests with the same NFE and branch count form one batch through an eager
fixed-shape step (core/static_step.py; compiled or ONNX engines have the shapes of one session);
a lone request runs through its session's own path. A batch that fails is retried one request at
a time, so one session's bad block costs only that session.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from torch import Tensor

from ..core.flow_transformer import FlowTransformer
from ..core.static_step import StaticBlock
from ..core.streaming import StreamingGenerator, run_steady_blocks
from .base import GenerationSettings

DEFAULT_WAIT_S = 0.03    # sessions' blocks on one grid arrive within a few ms of each other


@dataclass(eq=False)
class _Request:
    gen: StreamingGenerator
    block: int
    settings: GenerationSettings
    result: Tensor | None = None
    error: BaseException | None = None
    batched: bool = False         # ran in a batch of more than one session
    done: bool = field(default=False)


class BlockBatcher:
    def __init__(self, transformer: FlowTransformer, wait_s: float = DEFAULT_WAIT_S) -> None:
        self._engine = StaticBlock(transformer)
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._sessions = 0
        self._running = False
        self.batches = 0              # batches of more than one session run so far
        self.batched_blocks = 0       # blocks that ran in them

    def register(self) -> None:
        with self._cond:
            self._sessions += 1

    def unregister(self) -> None:
        with self._cond:
            self._sessions -= 1
            self._cond.notify_all()

    def run(self, gen: StreamingGenerator, block: int, settings: GenerationSettings) -> tuple[Tensor, bool]:
        """Latents (F, dim_w) of `gen`'s steady-state block `block`, and whether it ran in a batch
        with other sessions' blocks."""
        request = _Request(gen, block, settings)
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
            while not request.done:
                if not self._running and (len(self._pending) >= self._sessions or time.monotonic() >= deadline):
                    batch, self._pending, self._running = self._pending, [], True
                    break
                self._cond.wait(timeout=max(0.001, deadline - time.monotonic()))
            else:
                return self._answer(request)
        try:
            self._run(batch)
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()
        return self._answer(request)

    @staticmethod
    def _answer(request: _Request) -> tuple[Tensor, bool]:
        if request.error is not None:
            raise request.error
        return request.result, request.batched

    def _run(self, batch: list[_Request]) -> None:
        groups: dict[tuple[int, int], list[_Request]] = defaultdict(list)
        for r in batch:
            groups[(r.settings.nfe, r.settings.guidance_branches)].append(r)
        for (nfe, branches), requests in groups.items():
            if len(requests) > 1:
                try:
                    outs = run_steady_blocks(self._engine, [(r.gen, r.block) for r in requests], nfe, branches,
                                             [r.settings.avatar_audio_scale for r in requests],
                                             [r.settings.user_scale for r in requests])
                    for r, out in zip(requests, outs):
                        r.result, r.batched = out, True
                    self.batches += 1
                    self.batched_blocks += len(requests)
                except Exception:     # noqa: BLE001 - retried alone below: each failure reaches its own session
                    pass
            for r in requests:
                if r.result is None:
                    self._run_alone(r)
                r.done = True

    @staticmethod
    def _run_alone(r: _Request) -> None:
        s = r.settings
        try:
            r.result = r.gen.generate_block(r.block, s.nfe, s.guidance_branches, s.avatar_audio_scale, s.user_scale)
        except Exception as error:   # noqa: BLE001 - raised again in the asking session's thread
            r.error = error
