"""CUDA-graphed updates must equal eager ones (GPU tests skip without CUDA; the eager path runs everywhere).

Without a GPU, `NoHostSync` still checks on the CPU that the code captured on CUDA (replay draw and step
recording with the experts' outputs, DQN and student updates with or without their replay draw, acting and
inference forwards) never reads device data on the host, which would break capture.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from actormimic import cc

from actormimic.replay import ReplayBuffer
from agents.amn import ActorMimicLearner, Student
from agents.dqn import BATCH_FIELDS, DQN
from agents.graphs import WARMUP_STEPS, GraphedStep, _stack_scalars, graphed_forward
from agents.networks import QNetwork, set_precision
from tests.test_replay import ATARI, MINATAR, PAYLOAD, Driver, FakeVecEnv, payload_fn

aten = torch.ops.aten
_SYNCING = {aten._local_scalar_dense, aten.nonzero, aten.argwhere, aten.masked_select, aten._unique2,
            aten.unique_dim, aten.unique_consecutive, aten.equal, aten.is_nonzero}
_INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
_FROM_HOST = {aten.lift_fresh, aten.lift_fresh_copy}

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


class NoHostSync(TorchDispatchMode):
    """Fails on the ops that read device data on the host or give a data-dependent shape, i.e. that synchronise
    with a GPU and cannot be captured in a CUDA graph: tensor.item() / bool() / int(), indexing with a 0-dim
    tensor, nonzero, boolean-mask indexing, unique, torch.equal. With `capture=True` (code that a graph captures)
    also on copying host data into a new tensor (torch.tensor(...)) and on drawing from a generator of one's own
    (a graph draws only from the registered default one)."""

    def __init__(self, capture: bool = True) -> None:
        super().__init__()
        self.capture = capture
        self.checked = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.checked += 1
        masks = [i for i in (args[1] or []) if i is not None] if func.overloadpacket in _INDEXING else []
        if func.overloadpacket in _SYNCING or any(i.dtype == torch.bool for i in masks):
            raise AssertionError(f"{func} reads device data on the host: it synchronises with a GPU and cannot be "
                                 f"captured in a CUDA graph")
        if self.capture and func.overloadpacket in _FROM_HOST:
            raise AssertionError(f"{func} copies host data: it cannot be captured in a CUDA graph")
        if self.capture and (kwargs or {}).get("generator") is not None:
            raise AssertionError(f"{func} draws from its own generator: it cannot be captured in a CUDA graph")
        return func(*args, **(kwargs or {}))


def unchecked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` run outside NoHostSync (torch's CPU Adam reads its step count; its CUDA form is capturable)."""
    def run(*args: Any, **kwargs: Any) -> Any:
        with _disable_current_modes():
            return fn(*args, **kwargs)
    return run


@pytest.fixture
def capture_checked(monkeypatch: pytest.MonkeyPatch) -> list[NoHostSync]:
    """As on CUDA, every GraphedStep runs its first WARMUP_STEPS calls eagerly and then captures its step: run
    the later calls' steps under NoHostSync, also without CUDA (the list gets one mode per checked call)."""
    modes: list[NoHostSync] = []
    calls: dict[int, int] = {}

    def call(self: GraphedStep, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.zero_grad()
        calls[id(self)] = calls.get(id(self), 0) + 1
        if calls[id(self)] <= WARMUP_STEPS:
            return self.step(inputs)
        with NoHostSync() as mode:
            modes.append(mode)
            return self.step(inputs)

    monkeypatch.setattr(GraphedStep, "__call__", call)
    monkeypatch.setattr(cc, "_SHORTEN_ON_CPU", False)  # the CC normalizer's fixed-length accelerator loop
    return modes


def test_no_host_sync_catches_host_reads() -> None:
    x, i = torch.randn(4), torch.tensor(2)
    reads = (lambda: x.sum().item(), lambda: bool(x.sum() > 0), lambda: x[x > 0], lambda: x.nonzero(),
             lambda: x[i], lambda: torch.tensor([1.0, 2.0]), lambda: torch.rand(2, generator=torch.Generator()))
    for read in reads:
        with pytest.raises(AssertionError, match="cannot be captured"), NoHostSync():
            read()
    with NoHostSync(capture=False):  # allowed outside captured code
        torch.tensor([1.0, 2.0]) + torch.rand(2, generator=torch.Generator())
    with NoHostSync() as mode:
        torch.where(x > 0, x, 0.0).sum() + x.take(i)
    assert mode.checked >= 4


@pytest.mark.parametrize("shape", [ATARI, MINATAR], ids=["atari", "minatar"])
def test_replay_recording_and_draw_can_be_captured(shape: tuple, capture_checked: list[NoHostSync]) -> None:
    """While the ring fills and wraps (one checked mode per add and per draw after their warm-ups)."""
    frame_shape, stack = shape
    buf = ReplayBuffer(12 * 3, 3, frame_shape, stack, "cpu", n_step=3, gamma=0.9, payload=payload_fn(frame_shape[0]),
                       payload_shape=(PAYLOAD,))
    driver = Driver(FakeVecEnv(3, frame_shape, stack, seed=0, max_len=5), buf, seed=0)
    driver.reset()
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        driver.run(1)
        buf.sample(8, generator)
    assert len(capture_checked) == 2 * (30 - WARMUP_STEPS) and all(mode.checked > 10 for mode in capture_checked)


@pytest.mark.parametrize(("arch", "target_update", "precision"), [
    ("minatar", "hard", "fp32"), ("minatar", "polyak", "fp32"), ("nature", "hard", "fp32"), ("nature", "hard", "bf16")])
def test_dqn_update_and_acting_can_be_captured(arch: str, target_update: str, precision: str,
                                               capture_checked: list[NoHostSync]) -> None:
    """As on CUDA: two updates in one call, the hard target sync decided on the device, then acting."""
    obs_shape = (4, 10, 10) if arch == "minatar" else (4, 84, 84)
    network = QNetwork(arch, obs_shape, 3)
    set_precision(network, precision)
    agent = DQN(network, target_update=target_update, target_update_interval=3)
    agent._sync_on_device = True  # what a CUDA graph uses
    agent.optimizer.step = unchecked(agent.optimizer.step)
    gen = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randint(0, 256, (8, *obs_shape), generator=gen, dtype=torch.uint8),
             "action": torch.randint(0, 3, (8,), generator=gen), "reward": torch.rand(8, generator=gen),
             "next_obs": torch.randint(0, 256, (8, *obs_shape), generator=gen, dtype=torch.uint8),
             "done": (torch.rand(8, generator=gen) < 0.3).float(), "discount": torch.full((8,), 0.99)}
    for _ in range(WARMUP_STEPS + 2):
        agent.update(batch, count=2)
        agent.act(batch["obs"], 0.1, gen)
    assert len(capture_checked) == 4 and all(mode.checked > 5 for mode in capture_checked)


@pytest.mark.parametrize(("loss", "feature_beta"), [("ce", 0.0), ("cc", 0.0), ("kl", 0.0), ("mse", 0.0),
                                                    ("seed-cc", 0.0), ("cc", 0.01)])
def test_student_update_acting_and_expert_payloads_can_be_captured(loss: str, feature_beta: float,
                                                            capture_checked: list[NoHostSync]) -> None:
    games = {"A": [0, 1, 3], "B": [0, 1, 2, 4]}
    experts = {g: QNetwork("minatar", (4, 10, 10), len(a)) for g, a in games.items()}
    payloads = {g: graphed_forward(e, torch.device("cpu"), enabled=True) for g, e in experts.items()}
    student = Student("minatar", (4, 10, 10), list(games), games,
                      expert_feature_dims={g: 128 for g in games} if feature_beta else None)
    learner = ActorMimicLearner(student, loss=loss, temperature=1.0, temperature_on="teacher", lr=1e-3,
                                adam_eps=1e-8, max_grad_norm=10.0, feature_beta=feature_beta,
                                expert_features={g: e.features for g, e in experts.items()} if feature_beta else None)
    learner.optimizer.step = unchecked(learner.optimizer.step)
    gen = torch.Generator().manual_seed(1)

    class Batch:
        def __init__(self, game: str) -> None:
            self.obs = torch.randint(0, 2, (32, 4, 10, 10), generator=gen, dtype=torch.uint8)
            self.payload = payloads[game](self.obs)

    for step in range(WARMUP_STEPS + 2):
        batches = {g: Batch(g) for g in games}
        learner.update(batches, step, count=2)
        learner.act({g: b.obs[:4] for g, b in batches.items()}, 0.1, gen)
    assert learner.first_non_finite() is None
    assert len(capture_checked) == 8 and all(mode.checked > 5 for mode in capture_checked)


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
    # bf16 rounds activations to 8 significant bits, so other cuBLAS kernels inside the graph move the loss by
    # ~1e-4 relative (1.2e-4 seen on an H200); float32's agreement is ~100x closer
    loss_rtol = 1e-4 if precision == "fp32" else 2e-3
    metrics, acting = [], []
    for batch in batches:
        metrics.append([agent.update(batch, count=count) for agent in agents])
        acting.append((agents[1].act(probe, 0.0), agents[1].online(probe).argmax(1)))  # the acting graph
    for graphed, eager in acting:  # ... sees the weights as the updates left them
        assert torch.equal(graphed, eager)
    for eager, graphed in metrics:  # compared at the end: later replays must not overwrite returned metrics
        assert set(graphed) == set(eager)
        torch.testing.assert_close(graphed["loss/td"], eager["loss/td"], rtol=loss_rtol, atol=1e-6)
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

    metrics, acting = [], []
    for step in range(10):
        batches = {g: Batch(len(a)) for g, a in games.items()}
        metrics.append([learner.update(batches, step, count=count) for learner in learners])
        probe = {g: b.obs[:8] for g, b in batches.items()}
        acting.append((learners[1].act(probe, 0.0), {g: learners[1].student.logits(o, g).argmax(1)
                                                     for g, o in probe.items()}))
    for graphed, eager in acting:  # the acting graph sees the weights as the updates left them
        assert all(torch.equal(graphed[g], eager[g]) for g in games)
    for eager, graphed in metrics:  # compared after all the replays: returned metrics stay as they were
        assert set(graphed) == set(eager)
        torch.testing.assert_close(graphed["loss/total"], eager["loss/total"], rtol=1e-4, atol=1e-6)
    assert all(step._graph is not None for step in learners[1]._graphs.values())  # captured, no eager fallback
    _assert_same_training(student, learners[0].student, learners[1].student)


def _filled_replay(device: torch.device | str = "cpu", cuda_graph: bool = True) -> ReplayBuffer:
    """A MinAtar-shaped replay (4 envs, 3 actions as the payload) after 40 steps of a scripted stream."""
    frame_shape, stack = MINATAR
    buf = ReplayBuffer(30 * 4, 4, frame_shape, stack, device, n_step=3, gamma=0.9, payload=payload_fn(frame_shape[0]),
                       payload_shape=(PAYLOAD,), cuda_graph=cuda_graph)
    driver = Driver(FakeVecEnv(4, frame_shape, stack, seed=0, max_len=6), buf, seed=0)
    driver.reset()
    driver.run(40)
    return buf


def _student_pair(device: torch.device | str = "cpu") -> tuple[Student, dict[str, int]]:
    """A two-game MinAtar-shaped student whose games take PAYLOAD actions, and each game's share of a batch."""
    games = {"A": [0, 1, 3, 5], "B": [0, 1, 2, 4]}
    return Student("minatar", (MINATAR[0][0], 10, 10), list(games), games).to(device), {"A": 6, "B": 10}


def _make_learner(student: Student, device: torch.device | str = "cpu", cuda_graph: bool = True) -> ActorMimicLearner:
    return ActorMimicLearner(copy.deepcopy(student), loss="cc", temperature=1.0, temperature_on="teacher", lr=1e-3,
                             adam_eps=1e-8, max_grad_norm=10.0, device=device, cuda_graph=cuda_graph)


@pytest.mark.parametrize("count", [1, 2])
def test_an_update_drawing_its_own_batch_equals_sample_then_update(count: int) -> None:
    """A DeferredBatch drawn inside the update (one CUDA graph on a GPU) is the batch `sample` gives from the same
    generator state: DQN and student weights end bitwise equal (eager, CPU)."""
    replay = _filled_replay()
    torch.manual_seed(0)
    network = QNetwork("minatar", MINATAR[0], 6)  # the scripted stream acts in 0..5
    agents = [DQN(copy.deepcopy(network), target_update_interval=2) for _ in range(2)]
    student, shares = _student_pair()
    learners = [_make_learner(student) for _ in range(2)]
    generators = [torch.Generator().manual_seed(7) for _ in range(2)]
    for step in range(4):
        batch = replay.sample(16 * count, generators[0], BATCH_FIELDS)
        agents[0].update(batch, count=count)
        agents[1].update(replay.deferred(16 * count, BATCH_FIELDS), count=count, generator=generators[1])
        # the student's draws: one uniform tensor for all the games, split in the games' order
        uniforms = torch.rand(sum(shares.values()) * count, generator=generators[0], dtype=torch.float64)
        parts = dict(zip(shares, uniforms.split([n * count for n in shares.values()])))
        batches = {g: SimpleNamespace(**replay.deferred(n * count, ("obs", "payload")).draw(parts[g]))
                   for g, n in shares.items()}
        learners[0].update(batches, step, count=count)
        learners[1].update({g: replay.deferred(n * count, ("obs", "payload")) for g, n in shares.items()}, step,
                           count=count, generator=generators[1])
    for a, b in [(agents[0].online, agents[1].online), (agents[0].target, agents[1].target),
                 (learners[0].student, learners[1].student)]:
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(network.parameters()), next(agents[1].online.parameters()))  # they did learn
    with pytest.raises(ValueError, match="does not split into 3 equal parts"):
        agents[1].update(replay.deferred(16, BATCH_FIELDS), count=3)


def test_updates_drawing_their_own_batches_can_be_captured(capture_checked: list[NoHostSync]) -> None:
    """As on CUDA: the replay draw and the updates in one captured step, for the DQN and for the student."""
    replay = _filled_replay()
    agent = DQN(QNetwork("minatar", MINATAR[0], 6), target_update_interval=3)
    agent._sync_on_device = True  # what a CUDA graph uses
    agent.optimizer.step = unchecked(agent.optimizer.step)
    student, shares = _student_pair()
    learner = _make_learner(student)
    learner.optimizer.step = unchecked(learner.optimizer.step)
    generator = torch.Generator().manual_seed(0)
    recordings = len(capture_checked)  # filling the replay: its recording steps after their warm-up
    for step in range(WARMUP_STEPS + 2):
        agent.update(replay.deferred(32, BATCH_FIELDS), count=2, generator=generator)
        learner.update({g: replay.deferred(2 * n, ("obs", "payload")) for g, n in shares.items()}, step, count=2,
                       generator=generator)
    updates = capture_checked[recordings:]
    assert recordings == 40 - WARMUP_STEPS and len(updates) == 4 and all(mode.checked > 50 for mode in updates)


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
    """The captured recording and sampler keep the write position on the device: equal batches while the ring
    fills and wraps."""
    device = torch.device("cuda")
    frame_shape, stack = shape
    eager, graphed = (ReplayBuffer(12 * 3, 3, frame_shape, stack, device, n_step=3, gamma=0.9,
                                   payload=payload_fn(frame_shape[0]), payload_shape=(PAYLOAD,), cuda_graph=graph)
                      for graph in (False, True))
    driver = Driver(FakeVecEnv(3, frame_shape, stack, seed=0, max_len=5), _Tee(eager, graphed), seed=0)
    driver.reset()
    for step in range(30):
        driver.run(1)
        a, b = (buf.sample(8, torch.Generator(device).manual_seed(step)) for buf in (eager, graphed))
        for name in ("obs", "action", "reward", "next_obs", "done", "discount", "payload", "index"):
            torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=0)
    assert all(step._graph is not None for step in [*graphed._samplers.values(), graphed._recorder])  # not eager


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


@cuda
def test_graphed_updates_drawing_their_own_batches_equal_eager() -> None:
    """The replay draw captured with the updates it feeds: the same training as the eager draw and updates."""
    device = torch.device("cuda")
    replay = _filled_replay(device)
    torch.manual_seed(0)
    network = QNetwork("minatar", MINATAR[0], 6)  # the scripted stream acts in 0..5
    agents = [DQN(copy.deepcopy(network), device=device, cuda_graph=graph, target_update_interval=3)
              for graph in (False, True)]
    student, shares = _student_pair(device)
    learners = [_make_learner(student, device, cuda_graph=graph) for graph in (False, True)]
    metrics = []
    for step in range(8):
        for agent in agents:
            metrics.append(agent.update(replay.deferred(32, BATCH_FIELDS), count=2,
                                        generator=torch.Generator(device).manual_seed(step)))
        for learner in learners:
            learner.update({g: replay.deferred(2 * n, ("obs", "payload")) for g, n in shares.items()}, step,
                           count=2, generator=torch.Generator(device).manual_seed(step))
    for eager, graphed in zip(metrics[::2], metrics[1::2]):
        torch.testing.assert_close(graphed["loss/td"], eager["loss/td"], rtol=1e-4, atol=1e-6)
    assert all(step._graph is not None for step in agents[1]._steps.values())
    assert all(step._graph is not None for step in learners[1]._graphs.values())
    _assert_same_training(network, agents[0].online, agents[1].online)
    _assert_same_training(student, learners[0].student, learners[1].student)
