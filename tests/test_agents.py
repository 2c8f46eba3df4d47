"""Networks, DQN (targets, schedules, acting, learning, state) and the Actor-Mimic student."""

from __future__ import annotations

import copy
import subprocess
import sys
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actormimic.losses import distillation_loss
from agents import DQN, QNetwork, Student, arch_for_obs_shape, epsilon_schedule, set_precision
from agents.amn import ActorMimicLearner
from agents.networks import exploration_uniforms, explore_or_greedy

MINATAR = (4, 10, 10)
NATURE = (4, 84, 84)


class Batch(NamedTuple):
    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    done: Tensor
    discount: Tensor | None


class TableQ(nn.Module):
    """Q(s, .) = table[s], the state index being obs[:, 0, 0, 0]; lets targets be computed by hand."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table))

    def forward(self, obs: Tensor) -> Tensor:
        return self.table[obs[:, 0, 0, 0].long()]


def states(*ids: int) -> Tensor:
    return torch.tensor(ids, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, *MINATAR).clone()


# ---------------------------------------------------------------- networks


@pytest.mark.parametrize("arch,shape,width", [("nature", NATURE, 512), ("minatar", MINATAR, 128)])
@pytest.mark.parametrize("dueling", [False, True])
def test_qnetwork_shapes_and_spec(arch: str, shape: tuple[int, int, int], width: int, dueling: bool) -> None:
    net = QNetwork(arch, shape, 6, dueling=dueling)
    obs = torch.randint(0, 2, (3, *shape), dtype=torch.uint8)
    assert net(obs).shape == (3, 6)
    assert net.features(obs).shape == (3, width)
    assert arch_for_obs_shape(shape) == arch
    clone = QNetwork(**net.spec)
    clone.load_state_dict(net.state_dict())
    torch.testing.assert_close(clone(obs), net(obs))


def textbook_nature_features(torso: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The Nature torso as usually written: divide the input by 255, then plain convolutions."""
    h = pixels.float() / 255.0
    for layer in torso:
        h = F.conv2d(h, layer.weight, layer.bias, layer.stride) if isinstance(layer, nn.Conv2d) else layer(h)
    return h


def test_input_scaling() -> None:
    torch.manual_seed(0)
    nature = QNetwork("nature", NATURE, 4)
    pixels = torch.randint(0, 256, (2, *NATURE), dtype=torch.uint8)
    ours = nature.features(pixels)
    textbook = textbook_nature_features(nature.torso, pixels)
    torch.testing.assert_close(ours, textbook)
    torch.testing.assert_close(nature(pixels), nature(pixels.float()))
    ours_grads = torch.autograd.grad(ours.square().sum(), list(nature.torso.parameters()))
    textbook_grads = torch.autograd.grad(textbook.square().sum(), list(nature.torso.parameters()))
    for a, b in zip(ours_grads, textbook_grads):
        torch.testing.assert_close(a, b)
    minatar = QNetwork("minatar", MINATAR, 4)
    grid = torch.rand(2, *MINATAR) < 0.3
    torch.testing.assert_close(minatar.features(grid), nn.Sequential.forward(minatar.torso, grid.float()))


def test_dueling_combination() -> None:
    net = QNetwork("minatar", MINATAR, 5, dueling=True)
    obs = torch.randint(0, 2, (4, *MINATAR), dtype=torch.uint8)
    h = net.features(obs)
    advantage = net.advantage(h)
    expected = net.value(h) + advantage - advantage.mean(1, keepdim=True)
    torch.testing.assert_close(net(obs), expected)
    torch.testing.assert_close(net(obs).mean(1), net.value(h).squeeze(1))


def test_bad_obs_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="observation shape"):
        arch_for_obs_shape((4, 64, 64))
    with pytest.raises(ValueError, match="needs observations"):
        QNetwork("nature", MINATAR, 3)


# ---------------------------------------------------------------- DQN targets and loss

ONLINE = [[1.0, 5.0, 2.0], [4.0, 0.0, 3.0]]
TARGET = [[10.0, 20.0, 30.0], [7.0, 8.0, 9.0]]
# next states 0, 1, 0, 1; row 2 is terminal; row 0 a truncation (done=0, bootstraps); row 3 has discount 0
BATCH = Batch(
    obs=states(0, 0, 1, 1),
    action=torch.tensor([0, 2, 1, 0]),
    reward=torch.tensor([1.0, 2.0, 3.0, -1.0]),
    next_obs=states(0, 1, 0, 1),
    done=torch.tensor([0.0, 0.0, 1.0, 0.0]),
    discount=torch.tensor([0.9, 0.5, 0.9, 0.0]),
)


def table_dqn(double: bool, **kwargs) -> DQN:
    agent = DQN(TableQ(ONLINE), double=double, **kwargs)
    with torch.no_grad():
        agent.target.table.copy_(torch.tensor(TARGET))
    return agent


@pytest.mark.parametrize(
    "double,expected",
    [
        (True, [1 + 0.9 * 20, 2 + 0.5 * 7, 3.0, -1.0]),  # online argmax: s0 -> 1, s1 -> 0; evaluated by target
        (False, [1 + 0.9 * 30, 2 + 0.5 * 9, 3.0, -1.0]),  # max of target
    ],
)
def test_td_target_by_hand(double: bool, expected: list[float]) -> None:
    agent = table_dqn(double)
    b = BATCH
    target = agent.td_target(b.reward, b.next_obs, b.done, b.discount)
    torch.testing.assert_close(target, torch.tensor(expected))


@pytest.mark.parametrize("loss,expected", [("huber", (17.5 + 3 + 2.5 + 4.5) / 4), ("mse", (324 + 12.25 + 9 + 25) / 4)])
def test_update_loss_by_hand(loss: str, expected: float) -> None:
    # q(s, a) = [1, 2, 0, 4]; double targets [19, 5.5, 3, -1]
    agent = table_dqn(True, loss=loss)
    metrics = agent.update(BATCH)
    assert set(metrics) == {"loss/td", "train/q_mean", "train/grad_norm"}
    assert all(m.dim() == 0 for m in metrics.values())
    assert metrics["loss/td"].item() == pytest.approx(expected)
    assert metrics["train/q_mean"].item() == pytest.approx(1.75)
    assert metrics["train/grad_norm"].item() > 0


def test_missing_discount_uses_gamma_and_dict_batches_work() -> None:
    agent = table_dqn(False, gamma=0.5)
    batch = BATCH._replace(discount=None)._asdict()
    expected = agent.td_target(BATCH.reward, BATCH.next_obs, BATCH.done, torch.full((4,), 0.5))
    q = torch.tensor([1.0, 2.0, 0.0, 4.0])
    expected_loss = nn.functional.smooth_l1_loss(q, expected)
    assert agent.update(batch)["loss/td"].item() == pytest.approx(expected_loss.item())


def test_hard_target_update_every_interval() -> None:
    agent = DQN(TableQ(ONLINE), target_update="hard", target_update_interval=3, lr=0.1)
    initial = agent.target.table.detach().clone()
    for _ in range(2):
        agent.update(BATCH)
        torch.testing.assert_close(agent.target.table, initial)
    assert not torch.equal(agent.online.table, initial)
    agent.update(BATCH)
    torch.testing.assert_close(agent.target.table, agent.online.table)
    assert agent.updates == 3


def test_polyak_target_update() -> None:
    agent = table_dqn(True, target_update="polyak", tau=0.25, lr=0.1)
    old = agent.target.table.detach().clone()
    agent.update(BATCH)
    torch.testing.assert_close(agent.target.table, old + 0.25 * (agent.online.table - old))


def test_epsilon_schedule() -> None:
    assert epsilon_schedule(0, 1.0, 0.1, 100) == 1.0
    assert epsilon_schedule(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert epsilon_schedule(100, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert epsilon_schedule(10_000, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert epsilon_schedule(5, 1.0, 0.1, 0) == 0.1


# ---------------------------------------------------------------- acting


def test_act_honours_epsilon() -> None:
    torch.manual_seed(0)
    agent = DQN(QNetwork("minatar", MINATAR, 6))
    obs = torch.randint(0, 2, (4000, *MINATAR), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(123)
    greedy = agent.online(obs).argmax(1)
    actions = agent.act(obs, 0.0, gen)
    assert actions.dtype == torch.int64 and torch.equal(actions, greedy)
    uniform = torch.cat([agent.act(obs, 1.0, gen) for _ in range(3)])
    counts = torch.bincount(uniform, minlength=6).float()
    expected = uniform.numel() / 6
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 20.5  # chi-square, 5 dof, p = 0.001
    per_env = torch.tensor([0.0, 1.0]).repeat_interleave(2000)
    mixed = agent.act(obs, per_env, gen)
    assert torch.equal(mixed[:2000], greedy[:2000])
    assert (mixed[2000:] != greedy[2000:]).float().mean().item() == pytest.approx(5 / 6, abs=0.05)


def test_explore_or_greedy_by_hand() -> None:
    """Rows whose first uniform is below epsilon take action floor(u1 * A), the largest u1 still a valid action."""
    q = torch.tensor([[0.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 5.0, 0.0], [0.0, 1.0, 0.0]])
    below_one = 1.0 - 2.0**-24  # the largest float32 uniform
    uniforms = torch.tensor([[0.0, 0.5, 0.99, 0.2, 0.7], [0.0, 0.0, 0.0, below_one, 0.5]])
    assert explore_or_greedy(q, 0.5, uniforms).tolist() == [0, 0, 2, 2, 1]
    per_row = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    assert explore_or_greedy(q, per_row, uniforms).tolist() == [0, 0, 2, 1, 1]


# ---------------------------------------------------------------- learning


def chain_batch() -> Batch:
    """Two-state chain: s0 -a0-> r 0.5 end; s0 -a1-> s1 (gamma 0.9); s1 -a0-> r 1 end; s1 -a1-> r 0 end."""
    obs = torch.zeros(4, 2, 10, 10, dtype=torch.uint8)
    obs[:2, 0] = 1
    obs[2:, 1] = 1
    next_obs = obs[[0, 2, 2, 2]].clone()
    return Batch(
        obs=obs,
        action=torch.tensor([0, 1, 0, 1]),
        reward=torch.tensor([0.5, 0.0, 1.0, 0.0]),
        next_obs=next_obs,
        done=torch.tensor([True, False, True, True]),
        discount=torch.full((4,), 0.9),
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dqn_learns_a_two_state_chain(precision: str) -> None:
    torch.manual_seed(0)
    network = QNetwork("minatar", (2, 10, 10), 2)
    set_precision(network, precision)
    agent = DQN(network, lr=3e-3, target_update_interval=10)
    batch = chain_batch()
    for _ in range(150):
        agent.update(batch)
    q = agent.online(batch.obs[[0, 2]]).detach()
    torch.testing.assert_close(q, torch.tensor([[0.5, 0.9], [1.0, 0.0]]), atol=0.05, rtol=0)
    assert agent.act(batch.obs[[0, 2]], 0.0).tolist() == [1, 0]


def test_bf16_torso_tracks_fp32() -> None:
    """bf16 autocast of the Nature torso: float32 outputs within bf16 rounding of the fp32 network, and
    a gradient pointing the same way, so one DQN update moves the weights like the fp32 one."""
    torch.manual_seed(0)
    nets = {p: QNetwork("nature", (4, 84, 84), 6) for p in ("fp32", "bf16")}
    nets["bf16"].load_state_dict(nets["fp32"].state_dict())
    set_precision(nets["bf16"], "bf16")
    frames = torch.randint(0, 256, (16, 4, 84, 84), dtype=torch.uint8)
    q = {p: net(frames) for p, net in nets.items()}
    assert q["bf16"].dtype == torch.float32 and nets["bf16"].head.weight.dtype == torch.float32
    assert (q["bf16"] - q["fp32"]).abs().max() <= 0.02 * q["fp32"].abs().max()
    assert not torch.equal(q["bf16"], q["fp32"])  # bf16 arithmetic really ran
    for p in nets:
        nets[p].zero_grad()
        (q[p] * torch.linspace(-1, 1, 6)).sum().backward()
    for (name, a), b in zip(nets["fp32"].named_parameters(), nets["bf16"].parameters()):
        cosine = F.cosine_similarity(a.grad.flatten(), b.grad.flatten(), dim=0)
        assert cosine > 0.99, (name, float(cosine))
    with pytest.raises(ValueError, match="allowed: fp32, bf16"):
        set_precision(nets["fp32"], "fp16")


def test_dqn_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    batch = chain_batch()
    agent = DQN(QNetwork("minatar", (2, 10, 10), 2), lr=1e-3, target_update_interval=2)
    for _ in range(3):
        agent.update(batch)
    clone = DQN(QNetwork("minatar", (2, 10, 10), 2), lr=1e-3, target_update_interval=2)
    clone.load_state_dict(agent.state_dict())
    assert clone.updates == 3
    for a, b in zip(agent.state_dict()["target"].values(), clone.state_dict()["target"].values()):
        torch.testing.assert_close(a, b)
    for _ in range(2):  # identical continuation: same weights, Adam moments and target schedule
        m1, m2 = agent.update(batch), clone.update(batch)
        torch.testing.assert_close(m1["loss/td"], m2["loss/td"])
    for a, b in zip(agent.online.parameters(), clone.online.parameters()):
        torch.testing.assert_close(a, b)
    for a, b in zip(agent.target.parameters(), clone.target.parameters()):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- Actor-Mimic student

GAME_ACTIONS = {"pong": [0, 1, 3, 4, 11, 12], "breakout": [0, 1, 3, 4], "qbert": [0, 2, 3, 4, 5]}
GAMES = list(GAME_ACTIONS)


def make_student(**kwargs) -> Student:
    torch.manual_seed(0)
    return Student("minatar", MINATAR, GAMES, GAME_ACTIONS, **kwargs)


def obs_batch(n: int, seed: int) -> Tensor:
    return torch.randint(0, 2, (n, *MINATAR), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_student_gathers_union_logits_by_hand() -> None:
    student = make_student()
    assert student.union_actions == [0, 1, 2, 3, 4, 5, 11, 12]
    assert student.index["pong"].tolist() == [0, 1, 3, 4, 6, 7]
    assert student.index["breakout"].tolist() == [0, 1, 3, 4]
    assert student.index["qbert"].tolist() == [0, 2, 3, 4, 5]
    obs = obs_batch(5, 1)
    full = student.head(student.features(obs))
    torch.testing.assert_close(student.logits(obs, "pong"), full[:, [0, 1, 3, 4, 6, 7]])
    torch.testing.assert_close(student.logits(obs, "qbert"), full[:, [0, 2, 3, 4, 5]])


@pytest.mark.parametrize("per_game_heads", [False, True])
def test_forward_games_matches_per_game_forward(per_game_heads: bool) -> None:
    student = make_student(per_game_heads=per_game_heads)
    obs = {"pong": obs_batch(3, 1), "breakout": obs_batch(2, 2), "qbert": obs_batch(4, 3)}
    out = student.forward_games(obs)
    assert list(out) == list(obs)
    for game, (logits, features) in out.items():
        assert logits.shape == (obs[game].shape[0], len(GAME_ACTIONS[game]))
        torch.testing.assert_close(logits, student.logits(obs[game], game))
        torch.testing.assert_close(features, student.features(obs[game]))


@pytest.mark.parametrize("per_game_heads", [False, True])
def test_student_act_stays_in_game_action_set(per_game_heads: bool) -> None:
    student = make_student(per_game_heads=per_game_heads)
    obs = obs_batch(600, 4)
    gen = torch.Generator().manual_seed(0)
    explore = student.act({game: obs for game in GAME_ACTIONS}, 1.0,
                          exploration_uniforms(600 * len(GAME_ACTIONS), obs.device, gen))
    firsts = {game: obs[: 100 + 50 * i] for i, game in enumerate(GAME_ACTIONS)}
    greedy = student.act(firsts, 0.0, exploration_uniforms(sum(map(len, firsts.values())), obs.device, gen))
    for i, (game, actions) in enumerate(GAME_ACTIONS.items()):
        assert explore[game].dtype == torch.int64
        assert set(explore[game].tolist()) == set(range(len(actions)))
        torch.testing.assert_close(greedy[game], student.logits(obs[: 100 + 50 * i], game).argmax(1))


def test_learner_acts_as_its_student_with_the_same_draws() -> None:
    student = make_student()
    learner = ActorMimicLearner(student, loss="ce", temperature=1.0, temperature_on="teacher", lr=1e-3,
                                adam_eps=1e-8, max_grad_norm=10.0)
    obs = {game: obs_batch(40 + 10 * i, i) for i, game in enumerate(GAME_ACTIONS)}
    acted = learner.act(obs, 0.3, torch.Generator().manual_seed(5))
    uniforms = exploration_uniforms(sum(map(len, obs.values())), torch.device("cpu"), torch.Generator().manual_seed(5))
    expected = student.act(obs, 0.3, uniforms)
    assert list(acted) == list(obs)
    for game in obs:
        assert acted[game].shape == (len(obs[game]),) and torch.equal(acted[game], expected[game])
    assert any(not torch.equal(acted[g], student.logits(obs[g], g).argmax(1)) for g in obs)  # some explored


def test_student_spec_round_trip_and_feature_maps() -> None:
    student = make_student(per_game_heads=True, expert_feature_dims={"pong": 512, "qbert": 256})
    assert student.feature_maps["pong"](student.features(obs_batch(2, 0))).shape == (2, 512)
    assert set(student.feature_maps) == {"pong", "qbert"}
    clone = Student(**student.spec)
    clone.load_state_dict(student.state_dict())
    obs = obs_batch(3, 5)
    for game in GAMES:
        torch.testing.assert_close(clone.logits(obs, game), student.logits(obs, game))


def test_student_rejects_bad_action_sets() -> None:
    with pytest.raises(ValueError, match="breakout"):
        Student("minatar", MINATAR, ["pong", "breakout"], {"pong": [0, 1]})
    with pytest.raises(ValueError, match="repeats"):
        Student("minatar", MINATAR, ["pong"], {"pong": [0, 1, 1]})
    with pytest.raises(ValueError, match="not in"):
        Student("minatar", MINATAR, ["pong"], {"pong": [0, 1]}, expert_feature_dims={"qbert": 512})


def test_learner_loss_uses_target_smoothing() -> None:
    """The learner's per-game loss is distillation_loss with its temperature and target smoothing."""
    student = make_student()
    learner = ActorMimicLearner(student, loss="cc", temperature=0.5, temperature_on="teacher", lr=1e-3,
                                adam_eps=1e-8, max_grad_norm=10.0, target_smoothing=0.2)
    obs = obs_batch(8, seed=3)
    q = torch.randn(8, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected, _ = distillation_loss("cc", student.logits(obs, "breakout"), q, temperature=0.5, smoothing=0.2)
        unsmoothed, _ = distillation_loss("cc", student.logits(obs, "breakout"), q, temperature=0.5)
    logs = learner.update({"breakout": SimpleNamespace(obs=obs, payload=q)}, step=1)
    torch.testing.assert_close(logs["loss/breakout/cc"], expected)
    assert not torch.allclose(expected, unsmoothed)


@pytest.mark.parametrize(("target_update", "sync_on_device"), [("hard", False), ("hard", True), ("polyak", False)])
def test_several_updates_in_one_call_equal_one_call_each(target_update: str, sync_on_device: bool) -> None:
    """update(batch of k x B, count=k) == k calls on its parts: weights, optimizer, target (synced mid-call),
    also with the hard sync decided on the device (as inside a CUDA graph) against the host's plain copy."""
    torch.manual_seed(0)
    network = QNetwork("minatar", (4, 10, 10), 3)
    agents = [DQN(copy.deepcopy(network), lr=1e-3, target_update=target_update, target_update_interval=3, tau=0.3)
              for _ in range(2)]
    agents[0]._sync_on_device = sync_on_device
    gen = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randint(0, 2, (5 * 8, 4, 10, 10), dtype=torch.uint8, generator=gen),
             "action": torch.randint(0, 3, (5 * 8,), generator=gen), "reward": torch.rand(5 * 8, generator=gen),
             "next_obs": torch.randint(0, 2, (5 * 8, 4, 10, 10), dtype=torch.uint8, generator=gen),
             "done": (torch.rand(5 * 8, generator=gen) < 0.2).float(), "discount": torch.full((5 * 8,), 0.99)}
    together = agents[0].update(batch, count=5)
    for i in range(5):
        alone = agents[1].update({k: v[8 * i:8 * (i + 1)] for k, v in batch.items()})
    assert agents[0].updates == agents[1].updates == 5
    torch.testing.assert_close(together["loss/td"], alone["loss/td"], rtol=0, atol=0)
    for net in ("online", "target"):
        for a, b in zip(getattr(agents[0], net).parameters(), getattr(agents[1], net).parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(next(agents[0].target.parameters()), next(network.parameters()))  # synced at step 3
    with pytest.raises(ValueError, match="does not split into 3"):
        agents[0].update(batch, count=3)


@pytest.mark.parametrize("loss", ["ce", "cc"])
def test_student_updates_in_one_call_equal_one_call_each(loss: str) -> None:
    """learner.update(batches of k x B_g, count=k) == k calls on the parts of every game's batch."""
    learners = [ActorMimicLearner(make_student(), loss=loss, temperature=1.0, temperature_on="teacher", lr=1e-3,
                                  adam_eps=1e-8, max_grad_norm=10.0) for _ in range(2)]
    learners[1].student.load_state_dict(learners[0].student.state_dict())
    gen = torch.Generator().manual_seed(3)
    sizes = {game: 4 * (1 + i) for i, game in enumerate(GAME_ACTIONS)}  # 3 steps of 4, 8, ... rows per game
    batches = {game: SimpleNamespace(obs=obs_batch(3 * sizes[game], i),
                                     payload=torch.randn(3 * sizes[game], len(actions), generator=gen))
               for i, (game, actions) in enumerate(GAME_ACTIONS.items())}
    together = learners[0].update(batches, step=7, count=3)
    for i in range(3):
        alone = learners[1].update({g: SimpleNamespace(obs=b.obs[i * sizes[g]:(i + 1) * sizes[g]],
                                                       payload=b.payload[i * sizes[g]:(i + 1) * sizes[g]])
                                    for g, b in batches.items()}, step=7)
    torch.testing.assert_close(together["loss/total"], alone["loss/total"], rtol=0, atol=0)
    for a, b in zip(learners[0].student.parameters(), learners[1].student.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not split into 5"):
        learners[0].update(batches, step=8, count=5)


def test_agents_import_only_the_framework_modules_architecture_allows():
    """ARCHITECTURE.md: agents may use actormimic.cc, actormimic.losses and actormimic.replay, nothing else of it."""
    code = ("import sys, agents; allowed = {'actormimic', 'actormimic.cc', 'actormimic.losses', 'actormimic.replay'};"
            "bad = [m for m in sys.modules if m.split('.')[0] == 'actormimic' and m not in allowed];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_update_clips_the_gradient_norm() -> None:
    """One update equals a hand-written step: Huber TD loss, clip_grad_norm_(max_grad_norm), Adam."""
    agent = table_dqn(True, lr=0.1, max_grad_norm=1e-4)
    reference = copy.deepcopy(agent.online)
    adam = torch.optim.Adam(reference.parameters(), lr=0.1, eps=1.5e-4)
    target = agent.td_target(BATCH.reward, BATCH.next_obs, BATCH.done, BATCH.discount)
    q = reference(BATCH.obs).gather(1, BATCH.action.unsqueeze(1)).squeeze(1)
    F.smooth_l1_loss(q, target).backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 1e-4)
    adam.step()
    metrics = agent.update(BATCH)
    assert metrics["train/grad_norm"].item() > 1e-4  # the pre-clip norm is reported, and clipping was needed
    torch.testing.assert_close(agent.online.table, reference.table)


def test_learner_weights_each_game_by_its_share_of_the_batch() -> None:
    student = make_student()
    learner = ActorMimicLearner(student, loss="ce", temperature=1.0, temperature_on="teacher", lr=1e-3,
                                adam_eps=1e-8, max_grad_norm=10.0)
    obs = {"pong": obs_batch(2, seed=1), "breakout": obs_batch(6, seed=2)}
    q = {g: torch.randn(len(o), student.n_actions(g), generator=torch.Generator().manual_seed(i))
         for i, (g, o) in enumerate(obs.items())}
    with torch.no_grad():
        per_game = {g: distillation_loss("ce", student.logits(obs[g], g), q[g])[0] for g in obs}
    logs = learner.update({g: SimpleNamespace(obs=obs[g], payload=q[g]) for g in obs}, step=1)
    torch.testing.assert_close(logs["loss/total"], (2 * per_game["pong"] + 6 * per_game["breakout"]) / 8)


def test_learner_reports_how_sharp_each_teacher_is() -> None:
    """train/<game>/teacher_top_prob is the mean largest probability of the teacher's softmax(Q/T)."""
    student = make_student()
    temperature = 0.05
    learner = ActorMimicLearner(student, loss="ce", temperature=temperature, temperature_on="teacher", lr=1e-3,
                                adam_eps=1e-8, max_grad_norm=10.0)
    obs = {"pong": obs_batch(3, seed=1), "breakout": obs_batch(5, seed=2)}
    q = {g: 0.1 * torch.randn(len(o), student.n_actions(g), generator=torch.Generator().manual_seed(i))
         for i, (g, o) in enumerate(obs.items())}
    logs = learner.update({g: SimpleNamespace(obs=obs[g], payload=q[g]) for g in obs}, step=1)
    for game in obs:
        teacher = torch.distributions.Categorical(logits=q[game].double() / temperature)
        torch.testing.assert_close(logs[f"train/{game}/teacher_top_prob"].double(),
                                   teacher.probs.max(-1).values.mean(), rtol=1e-5, atol=1e-7)
