"""(Double) DQN agent: epsilon-greedy acting and TD updates, optionally captured as one CUDA graph."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from agents.graphs import DeferredBatch, GraphedStep, check_parts, draw_uniforms, drawn, graphed_forward, steps_in_parts
from agents.networks import QNetwork, exploration_uniforms, explore_or_greedy

BATCH_FIELDS = ("obs", "action", "reward", "next_obs", "done", "discount")
_FLOAT_FIELDS = ("reward", "done", "discount")


def epsilon_schedule(step: int, start: float, end: float, fraction_steps: int) -> float:
    """Linear decay from `start` to `end` over the first `fraction_steps` steps, then `end`."""
    if fraction_steps <= 0:
        return end
    progress = min(max(step, 0) / fraction_steps, 1.0)
    return start + progress * (end - start)


def make_adam(params: Any, *, lr: float, eps: float, capturable: bool = False) -> torch.optim.Adam:
    """Adam with the fused kernel: on CUDA two multi-tensor ops for all the parameters instead of 17
    (also inside a captured update, `capturable=True`), on the CPU about 3x faster than the per-tensor loop on small
    networks."""
    return torch.optim.Adam(list(params), lr=lr, eps=eps, capturable=capturable, fused=True)


class DQN:
    """Online/target Q-networks with Adam; knows how to act and learn, nothing about envs or logging."""

    def __init__(
        self,
        q_net: QNetwork,
        *,
        lr: float = 1e-4,
        adam_eps: float = 1.5e-4,
        gamma: float = 0.99,
        loss: str = "huber",
        max_grad_norm: float | None = 10.0,
        double: bool = True,
        target_update: str = "hard",
        target_update_interval: int = 1000,
        tau: float = 0.005,
        device: str | torch.device = "cpu",
        cuda_graph: bool = True,
    ) -> None:
        if loss not in ("huber", "mse"):
            raise ValueError(f"unknown loss {loss!r}; allowed: huber, mse")
        if target_update not in ("hard", "polyak"):
            raise ValueError(f"unknown target_update {target_update!r}; allowed: hard, polyak")
        if target_update == "hard" and target_update_interval < 1:
            raise ValueError(f"target_update_interval must be >= 1, got {target_update_interval}")
        self.device = torch.device(device)
        self.online = q_net.to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False).eval()
        self.gamma = gamma
        self.loss = loss
        self.max_grad_norm = math.inf if max_grad_norm is None else float(max_grad_norm)
        self.double = double
        self.target_update = target_update
        self.target_update_interval = target_update_interval
        self.tau = tau
        self.use_cuda_graph = cuda_graph and self.device.type == "cuda"
        self._params = list(self.online.parameters())  # walking the module tree every update costs ~3% on MinAtar
        self._targets = list(self.target.parameters())
        self.optimizer = make_adam(self._params, lr=lr, eps=adam_eps, capturable=self.use_cuda_graph)
        self.updates = 0
        # Inside a CUDA graph the hard target sync is decided on the device (a Python counter would be frozen at
        # capture); elsewhere on the host, which copies only when due (the device form touches every weight).
        self._sync_on_device = self.use_cuda_graph
        self._updates_dev = torch.zeros((), dtype=torch.int64, device=self.device)
        self._steps: dict[tuple[int, DeferredBatch | None], GraphedStep] = {}  # per count and deferred batch
        self._act = graphed_forward(self._act_step, self.device, self.use_cuda_graph)

    def act(self, obs: Tensor, epsilon: float | Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Epsilon-greedy actions int64 (N,) for a batch of observations (epsilon: one or one per observation), on
        device, no host sync; on CUDA one captured graph."""
        n = obs.shape[0]
        per_obs = (epsilon.to(self.device, torch.float32) if isinstance(epsilon, Tensor)
                   else torch.full((), epsilon, device=self.device)).expand(n)
        return self._act(obs, exploration_uniforms(n, self.device, generator), per_obs)

    def _act_step(self, obs: Tensor, uniforms: Tensor, epsilon: Tensor) -> Tensor:
        """What `act` captures: the online network's epsilon-greedy actions given the uniforms."""
        return explore_or_greedy(self.online(obs), epsilon, uniforms)

    def td_target(self, reward: Tensor, next_obs: Tensor, done: Tensor, discount: Tensor) -> Tensor:
        """reward + discount * (1 - done) * Q_target(next_obs, a'), a' = argmax of online (double) or target."""
        with torch.no_grad():
            online_next_q = self.online(next_obs) if self.double else None
            return self._bootstrap(reward, done, discount, self.target(next_obs), online_next_q)

    @staticmethod
    def _bootstrap(reward: Tensor, done: Tensor, discount: Tensor, next_q: Tensor, online_next_q: Tensor | None
                   ) -> Tensor:
        """reward + discount * (1 - done) * next_q at a' = argmax of online_next_q (double DQN) or of next_q."""
        if online_next_q is not None:
            next_value = next_q.gather(1, online_next_q.argmax(dim=1, keepdim=True)).squeeze(1)
        else:
            next_value = next_q.max(dim=1).values
        return reward + discount * (1.0 - done.to(next_value.dtype)) * next_value

    def update(self, batch: Any, count: int = 1, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """`count` gradient steps, one on each of the `count` equal parts of a replay batch (mapping or object
        with BATCH_FIELDS), each followed by its target update; on CUDA all of them are one captured graph. A
        `DeferredBatch` (e.g. `ReplayBuffer.deferred`) is drawn inside that graph, from uniforms drawn with
        `generator`. Returns the last step's 0-dim metric tensors."""
        deferred = batch if isinstance(batch, DeferredBatch) else None
        if (count, deferred) not in self._steps:
            zero_grad = partial(self.optimizer.zero_grad, set_to_none=True)
            train = partial(steps_in_parts, lambda i, b: self._train_step(b, self.updates + i + 1), zero_grad, count)
            self._steps[count, deferred] = GraphedStep(lambda inputs: train(self._batch_of(deferred, inputs, count)),
                                                       zero_grad, self.device, enabled=self.use_cuda_graph)
        inputs = (self._batch_tensors(batch) if deferred is None
                  else {"u": draw_uniforms([deferred], self.device, generator)})
        metrics = self._steps[count, deferred](inputs)
        self.updates += count
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Online and target weights, optimizer state and update counter."""
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from `state_dict()`; a captured CUDA graph is dropped and re-captured later."""
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))  # torch would alias same-device tensors
        self.updates = int(state["updates"])
        self._updates_dev.fill_(self.updates)
        for step in self._steps.values():
            step.reset()  # the optimizer state tensors were replaced, so the graphs' pointers are stale

    def _batch_of(self, deferred: DeferredBatch | None, inputs: Mapping[str, Tensor], count: int
                  ) -> Mapping[str, Tensor]:
        """The step's batch (`inputs`, or the deferred batch drawn with `inputs["u"]`), checked to split into
        `count` parts (device ops only)."""
        tensors = inputs if deferred is None else self._batch_tensors(drawn([deferred], inputs["u"])[0])
        check_parts(tensors, count)
        return tensors

    def _batch_tensors(self, batch: Any) -> dict[str, Tensor]:
        """The batch fields as tensors; a missing or None `discount` means a constant gamma."""
        get = batch.get if isinstance(batch, Mapping) else lambda name: getattr(batch, name, None)
        tensors = {name: get(name) for name in BATCH_FIELDS}
        missing = [name for name in BATCH_FIELDS[:-1] if tensors[name] is None]
        if missing:
            raise ValueError(f"DQN batch lacks fields {missing}")
        if tensors["discount"] is None:
            tensors["discount"] = torch.full_like(tensors["reward"], self.gamma, dtype=torch.float32)
        on_device = {name: t.to(self.device, non_blocking=True) for name, t in tensors.items()}
        return {name: t.float() if name in _FLOAT_FIELDS else t for name, t in on_device.items()}

    def _td_loss(self, b: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """TD loss and mean Q of the taken actions."""
        q_all = self.online(b["obs"])
        return self._loss_of(q_all, b, self.td_target(b["reward"], b["next_obs"], b["done"], b["discount"]))

    def _loss_of(self, q_all: Tensor, b: Mapping[str, Tensor], target: Tensor) -> tuple[Tensor, Tensor]:
        """TD loss (Huber or MSE) and mean Q of b's actions, from the online Q-values of b's observations."""
        q = q_all.gather(1, b["action"].long().unsqueeze(1)).squeeze(1)
        td = F.smooth_l1_loss(q, target) if self.loss == "huber" else F.mse_loss(q, target)
        return td, q.detach().mean()

    def _train_step(self, b: Mapping[str, Tensor], update: int) -> dict[str, Tensor]:
        """Forward, backward, clip, Adam step, then the target update after gradient step number `update`."""
        loss, q_mean = self._td_loss(b)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, self.max_grad_norm)
        self.optimizer.step()
        self._update_target(update)
        return {"loss/td": loss.detach(), "train/q_mean": q_mean, "train/grad_norm": grad_norm.detach()}

    def _update_target(self, update: int) -> None:
        """After gradient step number `update`: Polyak averaging, or a hard copy every `target_update_interval`
        steps; on the device, target * (1 - due) + online * due, which is exact for due 0 or 1."""
        with torch.no_grad():
            if self.target_update == "polyak":
                torch._foreach_lerp_(self._targets, self._params, self.tau)
            elif self._sync_on_device:
                self._updates_dev += 1
                due = (self._updates_dev % self.target_update_interval == 0).float()
                torch._foreach_mul_(self._targets, 1.0 - due)
                torch._foreach_add_(self._targets, torch._foreach_mul(self._params, due))
            elif update % self.target_update_interval == 0:
                torch._foreach_copy_(self._targets, self._params)
