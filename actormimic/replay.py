"""Uniform n-step replay for vector-env streams, storing single frames in a device ring.

Layout: row ``t`` (absolute, per env column, kept at slot ``t % T``) holds the newest frame of the
observation an action was taken in, that action, the step's reward/terminated/truncated, an
episode-start flag (the stack of this observation is zero before it) and a valid flag (the step was
recorded and is not an autoreset step).  Stacks and n-step windows are rebuilt at sample time.

Sampleable transition (row ``t``, env ``e``): valid; every frame its stack needs (back to the
episode start, at most ``stack - 1`` rows) is still in the ring; every step of its n-step window has
been recorded.  Only rows within ``stack - 1`` of the oldest row or ``n_step - 1`` of the newest
can fail the last two conditions; every other ("bulk") row is sampleable iff it is valid.

Exact uniformity without host syncs: each add appends the flat indices of its valid rows to a FIFO
(a device ring with a device-side tail counter) and ``row_cum[t]`` records the FIFO position of
row ``t``'s first entry, so the bulk's sampleable rows are FIFO positions
``[row_cum[lo], row_cum[hi + 1])``.  The few edge ("band") rows are checked explicitly at sample
time.  A batch draws ``u`` uniformly in ``[0, bulk + band)`` on the device and maps it to a FIFO
entry or, via a cumulative sum, to the ``u - bulk``-th sampleable band row (``u`` is a float64 uniform
times the count: bias below count / 2**53; no sampleable transition trips a device-side assert).

On CUDA the whole draw after the uniforms (census, mapping, n-step returns, stack gathers) is device
ops only: it reads the write position from a device scalar and uses a band of fixed size, so it can be
captured, on its own (``sample``: one ``agents.graphs.GraphedStep`` per batch size and set of returned
fields) or inside the update it feeds (``deferred``: the draw and the update are one graph).  Recording
a step is one captured graph too: it writes at that device-side position and advances it, and the
step's host arrays (reward and the three flags) reach it in one copy.

A payload (e.g. an expert's Q-values) is stored with each observation: ``payload(obs)`` of the stack that
the buffer rebuilds for the row, computed inside the recording of the step taken in it, for all envs at once.

``len()`` needs no device data: num_envs x bulk rows.  It also counts the bulk's autoreset rows and
rows abandoned by a restart, and it misses the sampleable band rows (at most (stack + n_step - 2) x
num_envs).

Calling ``start()`` again (e.g. resuming after ``load_state_dict``) ends the interrupted episodes as
truncated at the last recorded step; the pending observation row never gets a transition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.graphs import DeferredBatch, GraphedStep, draw_uniforms


@dataclasses.dataclass
class Batch:
    """A minibatch of n-step transitions; every tensor lives on the buffer's device (None: not drawn)."""

    obs: Tensor | None = None  # (B, stack*C, H, W) uint8
    action: Tensor | None = None  # (B,) int64
    reward: Tensor | None = None  # (B,) float32: sum_{k<n'} gamma^k r_{t+k}
    next_obs: Tensor | None = None  # (B, stack*C, H, W) uint8: observation n' <= n steps later (the window stops
    # at an episode end)
    done: Tensor | None = None  # (B,) float32: 1.0 if the window ended with terminated (no bootstrap)
    discount: Tensor | None = None  # (B,) float32: gamma ** n'
    payload: Tensor | None = None  # (B, *payload_shape): payload(obs), stored with obs
    index: Tensor | None = None  # (B,) int64 flat storage index (slot * num_envs + env)


_FIELDS = tuple(field.name for field in dataclasses.fields(Batch))
_WINDOW_FIELDS = {"reward", "next_obs", "done", "discount"}  # the fields that need a transition's n-step window

_STORAGE = ("frames", "action", "reward", "terminated", "truncated", "start", "valid", "fifo", "row_cum", "tail")


class ReplayBuffer:
    """Preallocated device replay over ``num_envs`` lockstep env columns with uniform n-step sampling."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_shape: tuple[int, ...],
        stack: int,
        device: torch.device | str = "cpu",
        *,
        n_step: int = 1,
        gamma: float = 0.99,
        payload: Callable[[Tensor], Tensor] | None = None,
        payload_shape: tuple[int, ...] | None = None,
        payload_dtype: torch.dtype = torch.float32,
        cuda_graph: bool = True,
    ) -> None:
        rows = capacity // num_envs
        if stack < 1 or n_step < 1 or rows <= stack + n_step:
            raise ValueError(f"need stack, n_step >= 1 and capacity // num_envs > stack + n_step, got {rows} rows")
        if (payload is None) != (payload_shape is None):
            raise ValueError("give payload (a function of observations) and payload_shape together")
        self.device = torch.device(device)
        self.num_envs, self.rows, self.stack, self.n_step = num_envs, rows, stack, n_step
        self.frame_shape = tuple(frame_shape)
        self.gamma = gamma
        d, n = self.device, rows * num_envs
        self._frames = torch.empty((rows, num_envs, *self.frame_shape), dtype=torch.uint8, device=d)
        self._action = torch.zeros((rows, num_envs), dtype=torch.int64, device=d)
        self._reward = torch.zeros((rows, num_envs), dtype=torch.float32, device=d)
        self._terminated = torch.zeros((rows, num_envs), dtype=torch.bool, device=d)
        self._truncated = torch.zeros((rows, num_envs), dtype=torch.bool, device=d)
        self._start = torch.zeros((rows, num_envs), dtype=torch.bool, device=d)
        self._valid = torch.zeros((rows, num_envs), dtype=torch.bool, device=d)
        self._payload_fn = payload
        self._payload = (
            None
            if payload_shape is None
            else torch.empty((rows, num_envs, *payload_shape), dtype=payload_dtype, device=d)
        )
        self._fifo = torch.zeros(n, dtype=torch.int64, device=d)
        self._row_cum = torch.zeros(rows, dtype=torch.int64, device=d)
        self._tail = torch.zeros((), dtype=torch.int64, device=d)
        self._gamma_pow = torch.tensor([gamma**k for k in range(n_step + 1)], dtype=torch.float32, device=d)
        self._env_ids = torch.arange(num_envs, device=d)
        self._ages = torch.arange(stack - 1, -1, -1, device=d)  # frame ages in a stack, oldest first
        self._back = torch.arange(stack - 1, device=d)  # rows t - k whose episode start cuts a stack at t
        self._ahead = torch.arange(n_step, device=d)  # rows t + k of an n-step window
        self._t = 0  # rows recorded
        self._written = torch.zeros((), dtype=torch.int64, device=d)  # the same, for the (captured) sampler
        self._started = False
        self._graphed = cuda_graph and self.device.type == "cuda"
        self._deferred: dict[tuple[int, tuple[str, ...]], DeferredBatch] = {}  # one per batch size and fields
        self._samplers: dict[DeferredBatch, GraphedStep] = {}
        self._recorder = GraphedStep(self._record, lambda: None, self.device, enabled=self._graphed)
        self._fields = tuple(f for f in _FIELDS if f != "payload" or self._payload is not None)  # what a draw has

    @property
    def recorded(self) -> int:
        """Transitions recorded since this buffer was created (all env columns; a restart does not reset it)."""
        return self._t * self.num_envs

    @property
    def nbytes(self) -> int:
        """Bytes allocated by the storage tensors."""
        return sum(t.nbytes for t in self._tensors().values())

    def __len__(self) -> int:
        """Host-only estimate of the sampleable count: env columns x bulk rows (see the module docstring)."""
        _, lo, hi = self._bounds()
        return max(0, hi - lo + 1) * self.num_envs

    def start(self, obs: Any) -> None:
        """Begin a new episode in every env from the observations returned by ``env.reset()``."""
        frame = self._newest(obs)
        if self._started:
            # A reset mid-stream (e.g. after load_state_dict): the interrupted episodes end as truncated
            # at the last recorded step and the pending observation row never gets a transition.
            self._truncated[(self._t - 1) % self.rows] = True
            self._valid[self._t % self.rows] = False
            self._t += 1
            self._written.fill_(self._t)
        self._started = True
        s = self._t % self.rows
        self._frames[s] = torch.as_tensor(frame).to(self.device, torch.uint8)
        self._start[s] = True
        self._row_cum[s] = self._tail

    def add(
        self,
        action: Any,
        reward: Any,
        terminated: Any,
        truncated: Any,
        autoreset: Any,
        next_obs: Any,
    ) -> None:
        """Record one vector step taken in the current observations (and their payload).

        reward, terminated, truncated and autoreset are host arrays (numpy or CPU tensors), sent to the device in
        one copy; action and next_obs may be on any device.  On CUDA the recording is one captured graph."""
        if not self._started:
            raise RuntimeError("call start(obs) before add()")
        inputs = {"action": torch.as_tensor(action, dtype=torch.int64),
                  "step": self._host_step(reward=reward, terminated=terminated, truncated=truncated,
                                          autoreset=autoreset),
                  "frame": torch.as_tensor(self._newest(next_obs), dtype=torch.uint8)}
        self._recorder(inputs)
        self._t += 1

    def _record(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Write one step at the device-side write position (with the payload of its observation) and the next
        observation's frame after it (device ops only, so that it can be captured; ``add`` advances the host-side
        count)."""
        d, s = self.device, (self._written % self.rows).view(1)
        step = inputs["step"].to(d, non_blocking=True)
        reset = step[3].bool()
        valid = ~reset
        self._action.index_copy_(0, s, inputs["action"].to(d).view(1, -1))
        self._reward.index_copy_(0, s, step[0].view(1, -1))
        self._terminated.index_copy_(0, s, step[1].bool().view(1, -1))
        self._truncated.index_copy_(0, s, step[2].bool().view(1, -1))
        self._valid.index_copy_(0, s, valid.view(1, -1))
        if self._payload_fn is not None:
            with torch.no_grad():
                payload = self._payload_fn(self._stacks(self._written.expand(self.num_envs), self._env_ids))
            self._payload.index_copy_(0, s, payload.to(self._payload.dtype).unsqueeze(0))
        # Valid envs first (stable), written to FIFO positions [tail, tail + N); the tail moves past the valid ones.
        order = torch.argsort(reset.to(torch.uint8), stable=True)
        self._fifo[(self._tail + self._env_ids) % self._fifo.numel()] = s * self.num_envs + order
        self._tail += valid.sum()
        self._written += 1
        s = (self._written % self.rows).view(1)
        self._frames.index_copy_(0, s, inputs["frame"].to(d).unsqueeze(0))
        self._start.index_copy_(0, s, reset.view(1, -1))
        self._row_cum.index_copy_(0, s, self._tail.view(1))
        return {}

    def _host_step(self, **arrays: Any) -> Tensor:
        """The named (N,) host arrays as rows of one float32 tensor, pinned for an asynchronous copy to CUDA."""
        for name, array in arrays.items():
            if tuple(np.shape(array)) != (self.num_envs,):
                raise ValueError(f"{name} has shape {tuple(np.shape(array))}, expected ({self.num_envs},)")
        step = torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32) for a in arrays.values()]))
        return step.pin_memory() if self.device.type == "cuda" else step

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               fields: tuple[str, ...] | None = None) -> Batch:
        """Draw ``batch_size`` transitions uniformly (with replacement) from the sampleable ones; ``fields`` (default:
        all, payload only with a payload) names the Batch fields to return, the others are None."""
        deferred = self.deferred(batch_size, fields)
        if deferred not in self._samplers:
            self._samplers[deferred] = GraphedStep(lambda inputs: deferred.draw(inputs["u"]), lambda: None,
                                                   self.device, enabled=self._graphed)
        return Batch(**self._samplers[deferred]({"u": draw_uniforms([deferred], self.device, generator)}))

    def deferred(self, batch_size: int, fields: tuple[str, ...] | None = None) -> DeferredBatch:
        """The draw of ``sample`` for an update to make inside its own step (one CUDA graph with the update): the
        same batch as ``sample`` from the same uniforms, as a mapping of the ``fields``."""
        allowed = self._fields
        fields = allowed if fields is None else tuple(fields)
        if not set(fields) <= set(allowed):
            raise ValueError(f"fields {sorted(set(fields) - set(allowed))}: not drawn by this buffer (allowed: "
                             f"{', '.join(allowed)})")
        if self._t == 0:
            raise ValueError("the buffer holds no transitions")
        key = (batch_size, fields)
        if key not in self._deferred:
            self._deferred[key] = DeferredBatch(partial(self._draw, fields), batch_size)
        return self._deferred[key]

    def _draw(self, fields: tuple[str, ...], uniforms: Tensor) -> dict[str, Tensor]:
        """The batch's ``fields`` for ``uniforms`` in [0, 1): static shapes, device tensors only (CUDA-graph safe).
        Only what the fields need is computed: the n-step window, the next observations' stacks, the payload."""
        first, bulk, band, cum, total = self._census()
        torch._assert_async(total > 0, "ReplayBuffer.sample: no sampleable transitions")
        u = torch.minimum((uniforms * total).long(), total - 1)
        T, N, t = self.rows, self.num_envs, self._written
        flat = self._fifo[(first + u) % self._fifo.numel()]
        rows, envs = t - (t - flat // N) % T, flat % N
        if band.numel():
            j = torch.searchsorted(cum, u - bulk, right=True).clamp_max(cum.numel() - 1)
            in_bulk = u < bulk
            rows, envs = torch.where(in_bulk, rows, band[j // N]), torch.where(in_bulk, envs, j % N)
        index = (rows % T) * N + envs
        batch = {"index": index}
        if _WINDOW_FIELDS & set(fields):  # the n-step window (distillation's draws need none of it)
            _, steps, ret, done = self._forward(rows, envs)
            batch.update(reward=ret, done=done.float(), discount=self._gamma_pow[steps])
        if "obs" in fields or "next_obs" in fields:
            ends = [rows, rows + steps] if "next_obs" in fields else [rows]  # one gather for both stacks
            batch.update(zip(("obs", "next_obs"), self._stacks(torch.stack(ends), envs.expand(len(ends), -1))))
        if "action" in fields:
            batch["action"] = self._action.view(-1)[index]
        if "payload" in fields:
            batch["payload"] = self._payload.flatten(0, 1).index_select(0, index)
        return {name: batch[name] for name in fields}

    def state_dict(self) -> dict:
        """Storage tensors (shared, not copied) and the write position."""
        return {**self._tensors(), "t": self._t, "started": self._started}

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()`` output of a buffer with the same shapes (n_step/gamma may differ)."""
        tensors = self._tensors()
        if set(tensors) != set(state) - {"t", "started"}:
            raise ValueError("payload configuration differs from the saved buffer")
        for name, tensor in tensors.items():
            if tuple(state[name].shape) != tuple(tensor.shape):
                raise ValueError(f"{name}: saved shape {tuple(state[name].shape)} != {tuple(tensor.shape)}")
            tensor.copy_(state[name])
        self._t, self._started = int(state["t"]), bool(state["started"])
        self._written.fill_(self._t)

    def _tensors(self) -> dict[str, Tensor]:
        """Storage tensors by name."""
        tensors = {name: getattr(self, f"_{name}") for name in _STORAGE}
        if self._payload is not None:
            tensors["payload"] = self._payload
        return tensors

    def _newest(self, obs: Any) -> Any:
        """The newest frame (last C channels) of stacked observations, shape-checked."""
        c = self.frame_shape[0]
        expected = (self.num_envs, self.stack * c, *self.frame_shape[1:])
        if tuple(obs.shape) != expected:
            raise ValueError(f"obs shape {tuple(obs.shape)} != {expected}")
        return obs[:, -c:]

    def _bounds(self) -> tuple[int, int, int]:
        """Oldest row in the ring and the bulk rows [lo, hi] (stack in the ring, n-step window recorded)."""
        oldest = max(0, self._t - self.rows + 1)
        return oldest, (oldest + self.stack - 1 if oldest else 0), self._t - self.n_step

    def _census(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """FIFO position of the bulk, bulk count, band rows, cumulative band mask, total count.

        Computed from the device-side row count with a band of fixed size (so it can be captured):
        the ``stack - 1`` oldest rows (checked explicitly also before the ring wraps, when ``_bounds``
        counts them in the bulk) and the ``n_step - 1`` newest; while the buffer is nearly empty, newest
        rows below ``lo`` (already in the band's head, or negative) are masked out."""
        t = self._written
        oldest = (t - self.rows + 1).clamp_min(0)
        lo, hi_next = oldest + self.stack - 1, t - self.n_step + 1
        band = torch.cat([oldest + self._back, t - self._ahead[1:].flip(0)])
        # torch.take, not [], with a 0-dim index: indexing would read the index on the host (no capture)
        first = self._row_cum.take(lo % self.rows)
        bulk = torch.where(hi_next > lo, self._row_cum.take(hi_next % self.rows) - first, 0)
        keep = torch.cat([torch.ones_like(self._back, dtype=torch.bool), band[self.stack - 1:] >= lo])
        cum = (self._sampleable(band[:, None], self._env_ids, oldest) & keep[:, None]).flatten().cumsum(0)
        return first, bulk, band, cum, bulk + (cum[-1] if cum.numel() else 0)

    def _sampleable(self, rows: Tensor, envs: Tensor, oldest: Tensor) -> Tensor:
        """Whether (rows, envs) are valid with a complete n-step window and a stack still in the ring."""
        in_ring = (rows[..., None] - self._ages >= oldest) | ~self._lookback(rows, envs)
        valid = self._valid.view(-1)[(rows % self.rows) * self.num_envs + envs]
        return valid & in_ring.all(-1) & self._forward(rows, envs)[0]

    def _lookback(self, rows: Tensor, envs: Tensor) -> Tensor:
        """Mask (..., stack), oldest first, of the frames in the stacks ending at rows that share their episode."""
        flat = ((rows[..., None] - self._back) % self.rows) * self.num_envs + envs[..., None]
        # age k > 0 is kept iff none of the rows t, t-1, ..., t-k+1 starts an episode
        kept = (~self._start.view(-1)[flat]).to(torch.int32).cumprod(-1)
        return torch.cat([kept.flip(-1), kept.new_ones((*kept.shape[:-1], 1))], -1).bool()

    def _forward(self, rows: Tensor, envs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """n-step windows from rows: (all steps recorded, n', discounted reward sum, ended terminated)."""
        ahead = rows[..., None] + self._ahead
        flat = (ahead % self.rows) * self.num_envs + envs[..., None]
        terminated = self._terminated.view(-1)[flat]
        ends = (terminated | self._truncated.view(-1)[flat]).to(torch.int32)
        alive = ends.cumsum(-1) == ends  # no episode end strictly before step k
        complete = (~alive | (ahead < self._written)).all(-1)
        ret = (alive * self._reward.view(-1)[flat] * self._gamma_pow[: self.n_step]).sum(-1)
        return complete, alive.sum(-1), ret, (alive & terminated).any(-1)

    def _stacks(self, rows: Tensor, envs: Tensor) -> Tensor:
        """Observation stacks (*rows.shape, stack*C, H, W) ending at rows, zero before the episode start."""
        flat = ((rows[..., None] - self._ages) % self.rows) * self.num_envs + envs[..., None]
        frames = self._frames.view(len(self._fifo), -1).index_select(0, flat.view(-1)).view(*flat.shape, -1)
        if self.stack > 1:  # a single frame is always its own episode's
            frames.mul_(self._lookback(rows, envs).to(torch.uint8).unsqueeze(-1))
        return frames.view(*rows.shape, self.stack * self.frame_shape[0], *self.frame_shape[1:])
