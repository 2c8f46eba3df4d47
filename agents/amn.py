"""Actor-Mimic multitask student: one shared torso, outputs over the union of the games' ALE actions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actormimic.losses import distillation_losses, feature_regression_loss
from agents.dqn import make_adam
from agents.graphs import (DeferredBatch, GraphedStep, check_parts, draw_uniforms, drawn, graphed_forward,
                           steps_in_parts)
from agents.networks import exploration_uniforms, explore_or_greedy, make_torso


class _IndexBuffers(nn.Module):
    """Per-game int64 buffers of union positions, looked up as `index[game]`."""

    def __init__(self, positions: Mapping[str, list[int]]) -> None:
        super().__init__()
        for game, pos in positions.items():
            self.register_buffer(game, torch.tensor(pos, dtype=torch.long))

    def __getitem__(self, game: str) -> Tensor:
        return self.get_buffer(game)


class Student(nn.Module):
    """Shared torso; a union-of-actions head (or one head per game) and optional feature-regression maps."""

    def __init__(
        self,
        arch: str,
        obs_shape: Sequence[int],
        games: Sequence[str],
        game_actions: Mapping[str, Sequence[int]],
        per_game_heads: bool = False,
        expert_feature_dims: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.games = list(games)
        self.game_actions = {g: [int(a) for a in game_actions[g]] for g in self.games if g in game_actions}
        self.per_game_heads = bool(per_game_heads)
        dims = expert_feature_dims
        self.expert_feature_dims = None if dims is None else {g: int(d) for g, d in dims.items()}
        self._check()
        self.union_actions = sorted(set().union(*map(set, self.game_actions.values())))
        position = {a: i for i, a in enumerate(self.union_actions)}
        self.index = _IndexBuffers({g: [position[a] for a in acts] for g, acts in self.game_actions.items()})
        self.torso = make_torso(arch, self.obs_shape)
        width = self.torso.out_features
        if self.per_game_heads:
            self.heads = nn.ModuleDict({g: nn.Linear(width, len(self.game_actions[g])) for g in self.games})
        else:
            self.head = nn.Linear(width, len(self.union_actions))
        if self.expert_feature_dims is not None:
            self.feature_maps = nn.ModuleDict({g: nn.Linear(width, d) for g, d in self.expert_feature_dims.items()})

    def _check(self) -> None:
        """Reject empty, duplicated or unknown games and games without a valid action set."""
        if not self.games or len(set(self.games)) != len(self.games):
            raise ValueError(f"Student needs distinct games, got {self.games}")
        for g in self.games:
            acts = self.game_actions.get(g)
            if not acts or len(set(acts)) != len(acts):
                raise ValueError(f"game {g!r} needs a non-empty action set without repeats, got {acts}")
        unknown = set(self.expert_feature_dims or {}) - set(self.games)
        if unknown:
            raise ValueError(f"expert_feature_dims names games that are not in {self.games}: {sorted(unknown)}")

    @property
    def spec(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this student."""
        return dict(
            arch=self.arch,
            obs_shape=self.obs_shape,
            games=list(self.games),
            game_actions={g: list(a) for g, a in self.game_actions.items()},
            per_game_heads=self.per_game_heads,
            expert_feature_dims=None if self.expert_feature_dims is None else dict(self.expert_feature_dims),
        )

    def n_actions(self, game: str) -> int:
        """Size of `game`'s action set."""
        return len(self.game_actions[game])

    def fit_channels(self, obs: Tensor) -> Tensor:
        """Zero-pad a game's observation channels up to the student's (MinAtar games differ in channels)."""
        missing = self.obs_shape[0] - obs.shape[1]
        if missing < 0:
            raise ValueError(f"observation has {obs.shape[1]} channels, the student takes at most {self.obs_shape[0]}")
        return F.pad(obs, (0, 0, 0, 0, 0, missing)) if missing else obs

    def features(self, obs: Tensor) -> Tensor:
        """Shared torso features (B, F) from raw observations."""
        return self.torso(self.fit_channels(obs))

    def head_logits(self, features: Tensor, game: str) -> Tensor:
        """Logits (B, n_actions(game)) from torso features, restricted to `game`'s actions in its order."""
        if self.per_game_heads:
            return self.heads[game](features)
        return self.head(features).index_select(1, self.index[game])

    def logits(self, obs: Tensor, game: str) -> Tensor:
        """Pre-softmax logits (B, n_actions(game)) over `game`'s action set."""
        return self.head_logits(self.features(obs), game)

    def forward_games(self, obs_by_game: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """Run the torso once on the concatenated mixed-game batch; per game (logits, torso features)."""
        games = list(obs_by_game)
        features = self.torso(torch.cat([self.fit_channels(obs_by_game[g]) for g in games]))
        sizes = [obs_by_game[g].shape[0] for g in games]
        return {g: (self.head_logits(f, g), f) for g, f in zip(games, features.split(sizes))}

    def act(self, obs_by_game: Mapping[str, Tensor], epsilon: float | Tensor, uniforms: Tensor) -> dict[str, Tensor]:
        """Epsilon-greedy int64 (N,) indices into each game's action set (not ALE ids), one torso pass for all, given
        `exploration_uniforms` for all the observations (in the games' order): draws nothing, so it can be captured."""
        with torch.no_grad():
            outputs = self.forward_games(obs_by_game)
            parts = uniforms.split([obs.shape[0] for obs in obs_by_game.values()], dim=1)
            return {g: explore_or_greedy(logits, epsilon, u) for (g, (logits, _)), u in zip(outputs.items(), parts)}


class ActorMimicLearner:
    """Trains a Student to mimic frozen experts with a loss from `actormimic.losses`.

    One update takes a replay minibatch per game (frames plus the expert's Q-values stored with
    them), runs the torso once on the mixed batch, sums the per-game losses weighted by their
    share of the batch, clips and steps Adam. On CUDA the update is one captured graph per set
    of active games. Non-finite losses are recorded per game on the device (no host sync).
    """

    def __init__(self, student: Student, *, loss: str, temperature: float, temperature_on: str, lr: float,
                 adam_eps: float, max_grad_norm: float, target_smoothing: float = 0.0, feature_beta: float = 0.0,
                 expert_features: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
                 device: torch.device | str = "cpu", cuda_graph: bool = True) -> None:
        self.student, self.loss, self.device = student, loss, torch.device(device)
        self.temperature, self.temperature_on, self.target_smoothing = temperature, temperature_on, target_smoothing
        self.max_grad_norm, self.feature_beta = max_grad_norm, feature_beta
        self.expert_features = dict(expert_features or {})
        if feature_beta and set(self.expert_features) != set(student.games):
            raise ValueError("feature regression needs expert features for every game")
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        self._params = list(student.parameters())
        self.optimizer = make_adam(self._params, lr=lr, eps=adam_eps, capturable=self.cuda_graph)
        self.first_bad_step = torch.full((len(student.games),), float("inf"), device=self.device)
        self._graphs: dict[tuple[Any, ...], GraphedStep] = {}  # by (active games..., count, deferred batches...)
        self._acting: dict[tuple[str, ...], Callable[..., Tensor]] = {}  # by acting games

    def act(self, obs_by_game: Mapping[str, Tensor], epsilon: float,
            generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The student's epsilon-greedy actions in every game (`Student.act`); on CUDA one captured graph."""
        games = tuple(obs_by_game)
        if games not in self._acting:
            step = partial(self._act_step, games)
            self._acting[games] = graphed_forward(step, self.device, self.cuda_graph)
        sizes = [obs_by_game[g].shape[0] for g in games]
        uniforms = exploration_uniforms(sum(sizes), self.device, generator)
        actions = self._acting[games](uniforms, torch.full((), epsilon, device=self.device),
                                      *(obs_by_game[g] for g in games))
        return dict(zip(games, actions.split(sizes)))

    def _act_step(self, games: tuple[str, ...], uniforms: Tensor, epsilon: Tensor, *obs: Tensor) -> Tensor:
        """What `act` captures: every game's actions, concatenated (one output to copy out of the graph)."""
        return torch.cat(list(self.student.act(dict(zip(games, obs)), epsilon, uniforms).values()))

    def update(self, batches: Mapping[str, Any], step: int, count: int = 1,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """`count` gradient steps on {game: batch with .obs and .payload (teacher Q)}, step i on the i-th of
        `count` equal parts of every game's batch; on CUDA all of them are one captured graph (per set of
        games and count). Batches that are a `DeferredBatch` of "obs" and "payload" (`ReplayBuffer.deferred`)
        are drawn inside that graph, from one draw of uniforms from `generator`. Returns the last step's 0-dim
        metric tensors."""
        inputs = {"step": torch.tensor(float(step)).to(self.device, non_blocking=True)}
        deferred = {g: b for g, b in batches.items() if isinstance(b, DeferredBatch)}
        if deferred:
            inputs["u"] = draw_uniforms(list(deferred.values()), self.device, generator)
        for game, batch in batches.items():
            if game not in deferred:
                inputs[f"obs/{game}"], inputs[f"q/{game}"] = batch.obs, batch.payload.float()
        key = (*batches, count, *deferred.values())
        if key not in self._graphs:
            zero_grad = partial(self.optimizer.zero_grad, set_to_none=True)
            train = partial(steps_in_parts, lambda _i, part: self._step(part), zero_grad, count)
            self._graphs[key] = GraphedStep(lambda tensors: train(_with_drawn(tensors, deferred, count)),
                                            zero_grad, self.device, enabled=self.cuda_graph)
        return self._graphs[key](inputs)

    def _step(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Forward, per-game losses, backward, clip, Adam step (gradients are None on entry)."""
        games = [g for g in self.student.games if f"obs/{g}" in inputs]
        outputs = self.student.forward_games({g: inputs[f"obs/{g}"] for g in games})
        batch_size = sum(inputs[f"obs/{g}"].shape[0] for g in games)
        total = torch.zeros((), device=self.device)
        logs: dict[str, Tensor] = {}
        losses = distillation_losses(self.loss, {g: outputs[g][0] for g in games},
                                     {g: inputs[f"q/{g}"] for g in games}, temperature=self.temperature,
                                     temperature_on=self.temperature_on, smoothing=self.target_smoothing)
        for game in games:
            logits, features = outputs[game]
            teacher_q, tag = inputs[f"q/{game}"], game.replace("/", "-")
            loss, diagnostics = losses[game]
            if self.feature_beta:
                target = self.expert_features[game](inputs[f"obs/{game}"])
                loss = loss + feature_regression_loss(features, target, self.student.feature_maps[game],
                                                      self.feature_beta)
            total = total + loss * (logits.shape[0] / batch_size)
            index = self.student.games.index(game)
            self.first_bad_step[index] = torch.where(torch.isfinite(loss), self.first_bad_step[index],
                                                     torch.minimum(self.first_bad_step[index], inputs["step"]))
            logs.update({_diagnostic_tag(key, tag, self.loss): value.detach() for key, value in diagnostics.items()})
            logs[f"train/{tag}/agreement"] = (logits.argmax(-1) == teacher_q.argmax(-1)).float().mean()
            logs[f"train/{tag}/teacher_top_prob"] = torch.softmax(teacher_q / self.temperature, -1).amax(-1).mean()
        total.backward()
        logs["train/grad_norm"] = torch.nn.utils.clip_grad_norm_(self._params, self.max_grad_norm)
        self.optimizer.step()
        logs["loss/total"] = total.detach()
        return logs

    def first_non_finite(self) -> tuple[str, int] | None:
        """(game, step) of the earliest non-finite loss, or None (one host synchronisation)."""
        step, index = self.first_bad_step.min(0)
        if not torch.isfinite(step):
            return None
        return self.student.games[int(index)], int(step)

    def state_dict(self) -> dict[str, Any]:
        """Optimizer state (the weights live in the student's own state_dict)."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the optimizer; captured graphs are dropped and re-captured."""
        self.optimizer.load_state_dict(state["optimizer"])
        for graph in self._graphs.values():
            graph.reset()


def _with_drawn(inputs: Mapping[str, Tensor], deferred: Mapping[str, DeferredBatch], count: int) -> dict[str, Tensor]:
    """`inputs` with the deferred games' batches drawn (with `inputs["u"]`) as obs/<game> and q/<game> (device ops
    only), checked to split into `count` equal parts."""
    tensors = {name: t for name, t in inputs.items() if name != "u"}
    if deferred:
        for game, batch in zip(deferred, drawn(list(deferred.values()), inputs["u"])):
            tensors[f"obs/{game}"], tensors[f"q/{game}"] = batch["obs"], batch["payload"].float()
    check_parts(tensors, count)
    return tensors


def _diagnostic_tag(key: str, game_tag: str, loss: str) -> str:
    """Namespace a loss diagnostic per game: 'loss' -> loss/<game>/<kind>, 'cc/x' -> cc/<game>/x."""
    section, _, name = key.rpartition("/")
    return f"{section}/{game_tag}/{name}" if section else f"loss/{game_tag}/{loss if name == 'loss' else name}"
