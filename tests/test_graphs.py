"""CUDA-graphed updates must equal eager ones (GPU tests skip without CUDA; the eager path runs everywhere)."""

from __future__ import annotations

import copy

import pytest
import torch

from actormimic.replay import ReplayBuffer
from agents.amn import ActorMimicLearner, Student
from agents.dqn import DQN
from agents.graphs import GraphedStep, _stack_scalars, graphed_forward
from agents.networks import QNetwork, set_precision
from tests.test_replay import ATARI, MINATAR, PAYLOAD, Driver, FakeVecEnv

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _dqn_batches(count: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Fixed random MinAtar-shaped batches."""
    gen = torch.Generator().manual_seed(0)
    return [{
        "obs": torch.randint(0, 2, (32, 4, 10, 10), generator=gen, dtype=torch.uint8).to(device),
        "action": torch.randint(0, 3, (32,), generator=gen).to(device),
        "reward": torch.rand(32, generator=gen).to(device),
        "next_obs": torch.randint(0, 2, (32, 4, 10, 10), generator=gen, dtype=torch.uint8).to(device),
        "done": (torch.rand(32, generator=gen) < 0.1).float().to(device),
        "discount": torch.full((32,), 0.99).to(device),
    } for _ in range(count)]


@torch.no_grad()
def _assert_same_training(initial: torch.nn.Module, eager: torch.nn.Module, graphed: torch.nn.Module) -> None:
    """The graphed updates moved the weights as the eager ones did, to 0.1% of the distance moved (not
    bitwise: cuBLAS may pick other kernels inside a graph, and Adam magnifies rounding where gradients are ~0)."""
    trio = list(zip(initial.parameters(), eager.parameters(), graphed.parameters()))
    moved = sum(float((e - i.to(e.device)).pow(2).sum()) for i, e, _ in trio) ** 0.5
    differ = sum(float((g - e).pow(2).sum()) for _, e, g in trio) ** 0.5
    assert moved > 0 and differ <= 1e-3 * moved, (differ, moved)


def test_scalar_outputs_are_stacked_only_when_all_scalars_of_one_dtype() -> None:
    stacked = _stack_scalars({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    assert stacked is not None and torch.equal(stacked, torch.tensor([1.0, 2.0]))
    assert _stack_scalars({"a": torch.tensor(1.0), "b": torch.tensor(2)}) is None
    assert _stack_scalars({"a": torch.tensor(1.0), "obs": torch.zeros(3)}) is None
    assert _stack_scalars({}) is None


def test_eager_step_zeroes_gradients_before_every_call() -> None:
    calls: list[str] = []
    step = GraphedStep(lambda inputs: calls.append("step") or {"x": inputs["x"] * 2},
                       lambda: calls.append("zero"), torch.device("cpu"), enabled=True)
    out = step({"x": torch.ones(2)})
    step({"x": torch.ones(2)})
    assert calls == ["zero", "step", "zero", "step"] and torch.equal(out["x"], torch.full((2,), 2.0))


@cuda
@pytest.mark.parametrize(("precision", "count"), [("fp32", 1), ("bf16", 1), ("fp32", 4)])
def test_graphed_dqn_updates_equal_eager_updates(precision: str, count: int) -> None:
    """count > 1: several updates in one graph, the target synced (every 3 updates) in the middle of it."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    network = QNetwork("minatar", (4, 10, 10), 3)
    set_precision(network, precision)
    agents = [DQN(copy.deepcopy(network), device=device, cuda_graph=graph, target_update_interval=3)
              for graph in (False, True)]
    singles = _dqn_batches(24, device)  # count 4: 6 calls, the graph captured at the 4th
    batches = [{k: torch.cat([b[k] for b in singles[i:i + count]]) for k in singles[0]}
               for i in range(0, len(singles), count)]
    probe = singles[0]["obs"][:8]
    metrics, acting = [], []
    for batch in batches:
        metrics.append([agent.update(batch, count=count) for agent in agents])
        acting.append((agents[1]._q_values(probe), agents[1].online(probe).detach()))  # the acting graph
    for graphed, eager in acting:  # ... sees the weights as the updates left them
        torch.testing.assert_close(graphed, eager, rtol=1e-3, atol=1e-4)
    for eager, graphed in metrics:  # compared at the end: later replays must not overwrite returned metrics
        assert set(graphed) == set(eager)
        torch.testing.assert_close(graphed["loss/td"], eager["loss/td"], rtol=1e-4, atol=1e-6)
    assert agents[1]._steps[count]._graph is not None  # really captured, not the eager fallback
    _assert_same_training(network, agents[0].online, agents[1].online)
    _assert_same_training(network, agents[0].target, agents[1].target)


@cuda
@pytest.mark.parametrize(("loss", "count"), [("ce", 1), ("cc", 1), ("cc", 3)])
def test_graphed_student_updates_equal_eager_updates(loss: str, count: int) -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    games = {"A": [0, 1, 3], "B": [0, 1, 2, 4]}
    student = Student("minatar", (4, 10, 10), list(games), games).to(device)
    learners = [ActorMimicLearner(copy.deepcopy(student), loss=loss, temperature=1.0, temperature_on="teacher",
                                  lr=1e-3, adam_eps=1e-8, max_grad_norm=10.0, device=device, cuda_graph=graph)
                for graph in (False, True)]
    gen = torch.Generator().manual_seed(1)

    class Batch:
        def __init__(self, n_actions: int) -> None:
            self.obs = torch.randint(0, 2, (16 * count, 4, 10, 10), generator=gen, dtype=torch.uint8).to(device)
            self.payload = torch.randn(16 * count, n_actions, generator=gen).to(device)

    metrics = []
    for step in range(10):
        batches = {g: Batch(len(a)) for g, a in games.items()}
        metrics.append([learner.update(batches, step, count=count) for learner in learners])
    for eager, graphed in metrics:  # compared after all the replays: returned metrics stay as they were
        assert set(graphed) == set(eager)
        torch.testing.assert_close(graphed["loss/total"], eager["loss/total"], rtol=1e-4, atol=1e-6)
    assert all(step._graph is not None for step in learners[1]._graphs.values())  # captured, no eager fallback
    _assert_same_training(student, learners[0].student, learners[1].student)


class _Tee:
    """Feeds one env stream to several replay buffers (reads come from the first)."""

    def __init__(self, *buffers: ReplayBuffer) -> None:
        self.buffers = buffers

    def __getattr__(self, name: str):  # noqa: ANN204
        if name in ("start", "add"):
            return lambda *args, **kwargs: [getattr(b, name)(*args, **kwargs) for b in self.buffers] and None
        return getattr(self.buffers[0], name)


@cuda
@pytest.mark.parametrize("shape", [ATARI, MINATAR], ids=["atari", "minatar"])
def test_graphed_replay_sampling_equals_eager(shape: tuple) -> None:
    """The captured sampler reads the live write position: equal batches while the ring fills and wraps."""
    device = torch.device("cuda")
    frame_shape, stack = shape
    eager, graphed = (ReplayBuffer(12 * 3, 3, frame_shape, stack, device, n_step=3, gamma=0.9,
                                   payload_shape=(PAYLOAD,), cuda_graph=graph) for graph in (False, True))
    driver = Driver(FakeVecEnv(3, frame_shape, stack, seed=0, max_len=5), _Tee(eager, graphed), seed=0)
    driver.reset()
    for step in range(30):
        driver.run(1)
        a, b = (buf.sample(8, torch.Generator(device).manual_seed(step)) for buf in (eager, graphed))
        for name in ("obs", "action", "reward", "next_obs", "done", "discount", "payload", "index"):
            torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=0)
    assert graphed._samplers[8]._graph is not None  # really captured, not the eager fallback


def test_graphed_forward_without_cuda_is_the_forward_without_gradients() -> None:
    net = QNetwork("minatar", (4, 10, 10), 3)
    x = torch.randint(0, 2, (5, 4, 10, 10), dtype=torch.uint8)
    out = graphed_forward(net, torch.device("cpu"), enabled=True)(x)
    assert not out.requires_grad and torch.equal(out, net(x).detach())


@cuda
def test_graphed_forward_equals_eager_forward() -> None:
    """A frozen network's forward as a graph: each replay sees its new input, and results stay fresh."""
    device = torch.device("cuda")
    net = QNetwork("nature", (4, 84, 84), 6).to(device).eval().requires_grad_(False)
    forward = graphed_forward(net, device, enabled=True)
    gen = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(8):
        x = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=gen).to(device)
        pairs.append((forward(x), net(x)))
    for graphed, eager in pairs:  # tolerance for TF32 convolutions picking other kernels under capture
        torch.testing.assert_close(graphed, eager, rtol=1e-3, atol=1e-4)
    assert not torch.allclose(pairs[0][0], pairs[1][0])  # different inputs really went through
