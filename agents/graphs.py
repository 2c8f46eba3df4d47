"""Whole-update CUDA graphs: warm up on a side stream, capture once on static inputs, replay.

The update (forward, backward, gradient clipping, optimizer step) is recorded as one CUDA graph,
following PyTorch's whole-network capture recipe: gradients are set to None before capture so
that backward allocates them from the graph's private pool, and every replay rewrites them in
place. The optimizer must be created with ``capturable=True``. Without CUDA, or when capture
fails, the same step runs eagerly. Several updates in a row can be one graph (the agents' `count`), and
so can the replay draw that feeds them (a `DeferredBatch`); the replay's sampler and recording and the
inference forwards (`graphed_forward`) are captured the same way.
Each replay returns fresh copies of the outputs; when they are all scalars (training metrics) they
are stacked inside the graph, so one copy serves them all.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

Step = Callable[[Mapping[str, Tensor]], dict[str, Tensor]]
WARMUP_STEPS = 3


@dataclasses.dataclass(frozen=True, eq=False)
class DeferredBatch:
    """A batch an update draws itself: `draw(u)` maps `size` float64 uniforms in [0, 1) to the batch's tensors with
    device ops only (e.g. a replay draw), so that the draw and the update are one CUDA graph. Compared and hashed by
    identity: its source hands out one per kind of draw, and an update keeps one graph per DeferredBatch."""

    draw: Callable[[Tensor], dict[str, Tensor]]
    size: int


def draw_uniforms(deferred: Sequence[DeferredBatch], device: torch.device, generator: torch.Generator | None
                  ) -> Tensor:
    """The uniforms of all the deferred batches, in order, in one tensor (one draw from `generator`)."""
    return torch.rand(sum(d.size for d in deferred), generator=generator, device=device, dtype=torch.float64)


def drawn(deferred: Sequence[DeferredBatch], uniforms: Tensor) -> list[dict[str, Tensor]]:
    """Each deferred batch drawn with its part of `uniforms` (from `draw_uniforms`)."""
    return [d.draw(u) for d, u in zip(deferred, uniforms.split([d.size for d in deferred]))]


class GraphedStep:
    """Call `step(inputs)` after `zero_grad()`; on CUDA as a replayed graph after a short warm-up."""

    def __init__(self, step: Step, zero_grad: Callable[[], None], device: torch.device, enabled: bool) -> None:
        self.step, self.zero_grad, self.device = step, zero_grad, torch.device(device)
        self.enabled = enabled and self.device.type == "cuda"
        self._static: dict[str, Tensor] | None = None
        self._outputs: dict[str, Tensor] | None = None
        self._packed: Tensor | None = None  # the outputs stacked inside the graph, when all are scalars
        self._graph: torch.cuda.CUDAGraph | None = None
        self._warmup_left = WARMUP_STEPS

    def reset(self) -> None:
        """Forget the graph (e.g. after the optimizer state was replaced); re-captured later."""
        self._graph, self._outputs, self._packed, self._warmup_left = None, None, None, WARMUP_STEPS

    def __call__(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run one step; returned tensors are fresh (later replays do not overwrite them)."""
        if not self.enabled:
            self.zero_grad()
            return self.step(inputs)
        static = self._copy_to_static(inputs)
        if self._graph is None and self._warmup_left > 0:
            self._warmup_left -= 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.zero_grad()
                outputs = self.step(static)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return {k: v.clone() for k, v in outputs.items()}
        if self._graph is None:
            try:
                self._capture(static)
            except Exception as error:  # capture failures come as RuntimeError or backend-specific types
                warnings.warn(f"CUDA graph capture failed, running the update eagerly: {error}", stacklevel=2)
                self.enabled = False
                return self(inputs)
        assert self._graph is not None and self._outputs is not None
        self._graph.replay()
        if self._packed is not None:  # one copy for all the metrics instead of one each
            return dict(zip(self._outputs, self._packed.clone().unbind()))
        return {k: v.clone() for k, v in self._outputs.items()}

    def _copy_to_static(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Allocate the static input tensors once, then copy each batch into them."""
        if self._static is None:
            self._static = {k: torch.empty_like(v, device=self.device) for k, v in inputs.items()}
        for name, value in inputs.items():
            target = self._static[name]
            if value.shape != target.shape or value.dtype != target.dtype:
                raise ValueError(f"a CUDA-graphed update needs fixed inputs: {name} is {tuple(value.shape)} "
                                 f"{value.dtype}, captured {tuple(target.shape)} {target.dtype}")
            target.copy_(value, non_blocking=True)
        return self._static

    def _capture(self, static: Mapping[str, Tensor]) -> None:
        """Record zero-grad-free forward/backward/step on the static inputs."""
        self.zero_grad()  # set_to_none: backward allocates the gradients inside the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._outputs = self.step(static)
            self._packed = _stack_scalars(self._outputs)
        self._graph = graph


def graphed_forward(forward: Callable[..., Tensor], device: torch.device, enabled: bool
                    ) -> Callable[..., Tensor]:
    """A gradient-free function of tensors (e.g. Q-values of one vector env's observations) as a replayed CUDA
    graph, one per set of input shapes; eager without CUDA. Weights updated in place are seen; the result is
    fresh."""
    def step(inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        with torch.no_grad():
            return {"out": forward(*inputs.values())}

    graphs: dict[tuple[tuple[tuple[int, ...], torch.dtype], ...], GraphedStep] = {}

    def call(*xs: Tensor) -> Tensor:
        key = tuple((tuple(x.shape), x.dtype) for x in xs)
        if key not in graphs:
            graphs[key] = GraphedStep(step, lambda: None, device, enabled)
        return graphs[key]({str(i): x for i, x in enumerate(xs)})["out"]

    return call


def check_parts(inputs: Mapping[str, Tensor], count: int) -> None:
    """Refuse a batch whose rows do not split into `count` equal parts (0-dim inputs are shared by all)."""
    for name, t in inputs.items():
        if t.dim() and len(t) % count:
            raise ValueError(f"{name}: a batch of {len(t)} does not split into {count} equal parts")


def part(inputs: Mapping[str, Tensor], index: int, count: int) -> dict[str, Tensor]:
    """The `index`-th of `count` equal parts (views) of every batched input; 0-dim inputs as they are."""
    return {name: t if t.dim() == 0 else t.narrow(0, index * (len(t) // count), len(t) // count)
            for name, t in inputs.items()}


def steps_in_parts(step: Callable[[int, Mapping[str, Tensor]], dict[str, Tensor]], zero_grad: Callable[[], None],
                   count: int, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`count` gradient steps, `step(i, part i of inputs)`, clearing the gradients between them (they are None
    on entry, as GraphedStep leaves them); returns the last step's outputs."""
    for i in range(count):
        if i:
            zero_grad()
        outputs = step(i, part(inputs, i, count))
    return outputs


def _stack_scalars(outputs: Mapping[str, Tensor]) -> Tensor | None:
    """The outputs stacked in one tensor if they are all 0-dim of one dtype (e.g. training metrics), else None."""
    values = list(outputs.values())
    if values and all(v.dim() == 0 and v.dtype == values[0].dtype for v in values):
        return torch.stack([v.detach() for v in values])
    return None
