"""Executable spec of actormimic.replay against a scripted NEXT_STEP-autoreset vector-env stream."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from actormimic.config import sampleable_transitions
from actormimic.replay import Batch, ReplayBuffer

ATARI = ((1, 84, 84), 4)
MINATAR = ((7, 10, 10), 1)
ATARI_SMALL = ((1, 12, 12), 4)  # Atari layout with small frames, for many-env runs
PAYLOAD = 4


class FakeVecEnv:
    """Deterministic vector env; frame pixels encode (env, per-env frame id); scripted episode ends and life losses."""

    def __init__(self, num_envs: int, frame_shape: tuple[int, ...], stack: int, seed: int, max_len: int = 9) -> None:
        self.n, self.frame_shape, self.stack, self.max_len = num_envs, frame_shape, stack, max_len
        self.rng = random.Random(seed)
        self.frame_ids = [0] * num_envs
        self.stacks: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self.script: list[dict] = [{} for _ in range(num_envs)]

    def _frame(self, e: int) -> np.ndarray:
        """A fresh frame, never all zero, unique per env."""
        fid = self.frame_ids[e]
        self.frame_ids[e] += 1
        frame = np.full(self.frame_shape, (fid * 7 + e * 13) % 251 + 1, dtype=np.uint8).reshape(-1)
        frame[:4] = (e, fid % 256, fid // 256, 255)
        return frame.reshape(self.frame_shape)

    def _new_episode(self, e: int) -> None:
        """Script the next episode of env e and push its zero-padded first observation."""
        length = self.rng.randint(1, self.max_len)
        self.script[e] = {
            "step": 0,
            "length": length,
            "end": self.rng.choice(["terminated", "truncated"]),
            "lives": {i for i in range(1, length) if self.rng.random() < 0.2},
            "needs_reset": False,
        }
        self.stacks[e] = [np.zeros(self.frame_shape, np.uint8)] * (self.stack - 1) + [self._frame(e)]

    def _obs(self) -> np.ndarray:
        """Stacked observations (N, stack*C, H, W), newest frame last."""
        return np.stack([np.concatenate(s, axis=0) for s in self.stacks])

    def reset(self) -> np.ndarray:
        """Start a new episode in every env."""
        for e in range(self.n):
            self._new_episode(e)
        return self._obs()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, ...]:
        """One vector step with gymnasium NEXT_STEP autoreset."""
        reward = np.zeros(self.n, np.float32)
        terminated, truncated, autoreset = (np.zeros(self.n, bool) for _ in range(3))
        for e in range(self.n):
            sc = self.script[e]
            if sc["needs_reset"]:
                self._new_episode(e)
                autoreset[e] = True
                continue
            sc["step"] += 1
            i = sc["step"]
            self.stacks[e] = self.stacks[e][1:] + [self._frame(e)]
            reward[e] = np.float32(self.rng.choice([-1.0, 0.0, 0.5, 1.0]) + 0.01 * int(action[e]))
            terminated[e] = i in sc["lives"] or (i == sc["length"] and sc["end"] == "terminated")
            truncated[e] = i == sc["length"] and sc["end"] == "truncated"
            sc["needs_reset"] = i == sc["length"]
        return self._obs(), reward, terminated, truncated, autoreset


def payload_of(obs: np.ndarray, c: int) -> np.ndarray:
    """Ground-truth payload of env observations: (env, frame id, sum of the whole stack, constant)."""
    newest = obs[:, -c:].reshape(len(obs), -1).astype(np.float32)
    total = obs.reshape(len(obs), -1).sum(1, dtype=np.int64).astype(np.float32)
    return np.stack([newest[:, 0], newest[:, 1] + 256 * newest[:, 2], total, np.full(len(obs), 0.5, np.float32)], 1)


def payload_fn(c: int):  # noqa: ANN201
    """`payload_of` in torch ops, for the buffer to compute from the stacks it rebuilds (exact: sums < 2**24)."""
    def payload(obs: torch.Tensor) -> torch.Tensor:
        newest = obs[:, -c:].flatten(1).float()
        return torch.stack([newest[:, 0], newest[:, 1] + 256 * newest[:, 2], obs.flatten(1).float().sum(1),
                            torch.full_like(newest[:, 0], 0.5)], 1)
    return payload


@dataclass
class Step:
    """One recorded env step of one env column, with the buffer row of its observation."""

    obs: np.ndarray
    action: int
    reward: float
    terminated: bool
    truncated: bool
    autoreset: bool
    next_obs: np.ndarray
    payload: np.ndarray
    row: int
    episode_row: int
    cut: bool = False


@dataclass
class Truth:
    """A real transition with independently computed n-step targets."""

    obs: np.ndarray
    action: int
    reward: float
    next_obs: np.ndarray
    done: float
    discount: float
    payload: np.ndarray
    first_row: int


@dataclass
class Driver:
    """Runs a FakeVecEnv into a ReplayBuffer and records the ground truth."""

    env: FakeVecEnv
    buf: ReplayBuffer
    seed: int
    steps: list[list[Step]] = field(default_factory=list)
    obs: np.ndarray | None = None
    row: int = 0
    episode_rows: list[int] = field(default_factory=list)

    def reset(self) -> None:
        """env.reset() + buf.start(); a mid-stream reset cuts the running episodes (treated as truncated)."""
        if self.obs is not None:
            for column in self.steps:
                column[-1].cut = True
            self.row += 1  # the pending observation row is abandoned
        self.obs = self.env.reset()
        self.buf.start(self.obs)
        self.steps = self.steps or [[] for _ in range(self.env.n)]
        self.episode_rows = [self.row] * self.env.n

    def run(self, n: int, to_tensor: bool = False) -> None:
        """Take n vector steps with random actions."""
        rng = np.random.default_rng(self.seed + self.row)
        c = self.env.frame_shape[0]
        for _ in range(n):
            action = rng.integers(0, 6, self.env.n)
            payload = payload_of(self.obs, c)
            next_obs, reward, terminated, truncated, autoreset = self.env.step(action)
            args = (action, reward, terminated, truncated, autoreset, next_obs)
            self.buf.add(*(torch.as_tensor(a) for a in args) if to_tensor else args)
            for e, column in enumerate(self.steps):
                column.append(Step(self.obs[e], int(action[e]), float(reward[e]), bool(terminated[e]),
                                   bool(truncated[e]), bool(autoreset[e]), next_obs[e], payload[e], self.row,
                                   self.episode_rows[e]))
                if autoreset[e]:
                    self.episode_rows[e] = self.row + 1
            self.obs = next_obs
            self.row += 1

    def truth(self) -> dict[tuple[int, int], Truth]:
        """All real transitions with a fully recorded n-step window, keyed by (env, frame id of obs)."""
        n, gamma = self.buf.n_step, self.buf.gamma
        out = {}
        for column in self.steps:
            for i, st in enumerate(column):
                if st.autoreset:
                    continue
                ret, k = 0.0, 0
                while True:
                    if i + k >= len(column):
                        break
                    s = column[i + k]
                    assert not s.autoreset
                    ret += gamma**k * s.reward
                    k += 1
                    if s.terminated or s.truncated or s.cut or k == n:
                        last = column[i + k - 1]
                        first_row = max(st.row - self.buf.stack + 1, st.episode_row)
                        out[key(st.obs, self.env.frame_shape[0])] = Truth(
                            st.obs, st.action, ret, last.next_obs, float(last.terminated), gamma**k, st.payload,
                            first_row)
                        break
        return out

    def sampleable(self) -> dict[tuple[int, int], Truth]:
        """Real transitions whose frames are still in the ring (rows > current row - T)."""
        oldest = self.row - self.buf.rows + 1
        return {k: v for k, v in self.truth().items() if v.first_row >= oldest}


def key(obs: np.ndarray, c: int) -> tuple[int, int]:
    """(env, frame id) decoded from the newest frame of one observation."""
    px = obs[-c:].reshape(-1)
    return int(px[0]), int(px[1]) + 256 * int(px[2])


def make(frame_shape: tuple[int, ...], stack: int, num_envs: int, rows: int, n_step: int, seed: int = 0,
         max_len: int = 9) -> Driver:
    """A started driver over a fresh buffer."""
    buf = ReplayBuffer(rows * num_envs, num_envs, frame_shape, stack, n_step=n_step, gamma=0.9,
                       payload=payload_fn(frame_shape[0]), payload_shape=(PAYLOAD,))
    driver = Driver(FakeVecEnv(num_envs, frame_shape, stack, seed, max_len), buf, seed)
    driver.reset()
    return driver


def check_batch(batch: Batch, truth: dict[tuple[int, int], Truth], driver: Driver) -> list[tuple[int, int]]:
    """Assert every sampled transition equals a real sampleable one exactly; return their keys."""
    c, b = driver.env.frame_shape[0], len(batch.action)
    assert batch.obs.dtype == batch.next_obs.dtype == torch.uint8 and batch.action.dtype == torch.int64
    assert batch.obs.shape == (b, driver.buf.stack * c, *driver.env.frame_shape[1:])
    assert all(t.dtype == torch.float32 for t in (batch.reward, batch.done, batch.discount, batch.payload))
    keys = []
    obs, next_obs = batch.obs.numpy(), batch.next_obs.numpy()
    for j in range(b):
        k = key(obs[j], c)
        assert k in truth, f"sampled {k}: not a sampleable real transition (autoreset, overwritten or incomplete)"
        t = truth[k]
        np.testing.assert_array_equal(obs[j], t.obs)
        np.testing.assert_array_equal(next_obs[j], t.next_obs)
        assert int(batch.action[j]) == t.action
        assert float(batch.reward[j]) == pytest.approx(t.reward, rel=1e-6, abs=1e-6)
        assert float(batch.done[j]) == t.done
        assert float(batch.discount[j]) == pytest.approx(t.discount, rel=1e-6)
        np.testing.assert_array_equal(batch.payload[j].numpy(), t.payload)
        assert int(batch.index[j]) % driver.env.n == k[0]
        keys.append(k)
    return keys


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize(("shape", "num_envs", "rows"), [(ATARI, 3, 24), (MINATAR, 4, 30), (ATARI_SMALL, 16, 9)],
                         ids=["atari", "minatar", "atari-many-envs"])
def test_samples_are_real_transitions_uniform_and_cover(shape, num_envs, rows, n_step):
    """Throughout a wrapping stream with a mid-stream reset, samples equal real transitions; finally cover uniformly."""
    (frame_shape, stack) = shape
    d = make(frame_shape, stack, num_envs, rows, n_step, seed=n_step)
    g = torch.Generator().manual_seed(0)
    seen: set[tuple[int, int]] = set()
    for chunk in range(40):
        if chunk == 25:
            d.reset()
        d.run(3)
        truth = d.sampleable()
        oldest = max(0, d.row - rows + 1)
        bulk_rows = max(0, d.row - n_step - (oldest + stack - 1 if oldest else 0) + 1)
        assert len(d.buf) == num_envs * bulk_rows
        assert len(truth) <= len(d.buf) + (stack + n_step - 2) * num_envs and (len(truth) > 0 or len(d.buf) == 0)
        if truth:
            seen.update(check_batch(d.buf.sample(48, g), truth, d))
    assert d.row > 3 * rows
    assert any(s.autoreset for col in d.steps for s in col) and any(s.cut for col in d.steps for s in col)
    truth = d.sampleable()
    keys = set()
    for _ in range(20 * len(truth) // 512 + 1):
        keys.update(check_batch(d.buf.sample(512, g), truth, d))
    assert keys == set(truth), "every sampleable transition is eventually drawn"
    # Storage indices identify transitions: chi-square of 200 draws per transition against uniform.
    index = torch.cat([d.buf.sample(4096, g).index for _ in range(200 * len(truth) // 4096 + 1)])
    counts = torch.bincount(index)
    counts = counts[counts > 0].double()
    assert len(counts) == len(truth)
    m = len(truth)
    chi2 = float(((counts - counts.mean()) ** 2 / counts.mean()).sum())
    assert chi2 < (m - 1) + 5 * (2 * (m - 1)) ** 0.5, f"chi2={chi2:.1f} for {m - 1} dof"


def test_ground_truth_stream_exercises_edge_cases():
    """The scripted stream contains life losses, truncations, terminations, 1-step episodes and autoresets."""
    d = make(*ATARI, num_envs=3, rows=24, n_step=3)
    d.run(120)
    steps = [s for col in d.steps for s in col]
    assert any(s.truncated for s in steps) and any(s.terminated for s in steps)
    life_losses = one_step_episodes = 0
    for col in d.steps:
        for a, b in zip(col, col[1:]):
            if b.autoreset:
                assert a.terminated or a.truncated
                assert b.reward == 0 and not b.next_obs[:-1].any() and b.next_obs[-1].any()
                one_step_episodes += a.row == a.episode_row
            elif a.terminated:  # life loss: the game goes on and the stack continues
                life_losses += 1
                np.testing.assert_array_equal(b.obs, a.next_obs)
                np.testing.assert_array_equal(b.obs[:-1], a.obs[1:])
                assert b.episode_row == a.episode_row
    assert life_losses and one_step_episodes


def _stream(buf: ReplayBuffer, c: int, script: list[tuple[float, bool, bool, bool]]) -> list[np.ndarray]:
    """Feed a one-env stack-2 stream; frames are filled with 1, 2, ...; returns the observations."""

    def obs_of(frames: list[int]) -> np.ndarray:
        return np.concatenate([np.full((c, 2, 2), f, np.uint8) for f in frames])[None]

    frames, out, nxt = [0, 1], [], 2
    buf.start(obs_of(frames))
    out.append(obs_of(frames))
    for reward, term, trunc, reset in script:
        frames = [0, nxt] if reset else [frames[1], nxt]
        nxt += 1
        buf.add(np.array([nxt]), np.array([reward]), np.array([term]), np.array([trunc]), np.array([reset]),
                obs_of(frames))
        out.append(obs_of(frames))
    return out


def _all(buf: ReplayBuffer) -> dict[int, Batch]:
    """Every distinct sampleable transition keyed by its storage index."""
    batch = buf.sample(2000, torch.Generator().manual_seed(1))
    out = {}
    for j, i in enumerate(batch.index.tolist()):
        out[i] = Batch(batch.obs[j], batch.action[j], batch.reward[j], batch.next_obs[j], batch.done[j],
                       batch.discount[j], None, batch.index[j])
    return out


def test_hand_computed_truncation_life_loss_and_reset():
    """Stack 2, n=3, gamma 0.5: truncation bootstraps, life loss stops the window, autoreset is skipped."""
    buf = ReplayBuffer(20, 1, (1, 2, 2), 2, n_step=3, gamma=0.5)
    script = [(1.0, False, False, False),  # row 0 -> 1
              (2.0, True, False, False),  # row 1: life loss (stack continues)
              (4.0, False, True, False),  # row 2: truncated, final obs at row 3
              (0.0, False, False, True),  # row 3: autoreset (never sampled), new episode at row 4
              (8.0, False, False, False), (16.0, False, False, False), (32.0, False, False, False)]
    obs = _stream(buf, 1, script)
    got = _all(buf)
    assert sorted(got) == [0, 1, 2, 4]  # row 3 is autoreset; rows 5, 6 lack 3 recorded steps
    expect = {0: (1 + 0.5 * 2, 1.0, 0.25, 2), 1: (2.0, 1.0, 0.5, 2), 2: (4.0, 0.0, 0.5, 3),
              4: (8 + 8 + 8, 0.0, 0.125, 7)}
    for row, (ret, done, disc, nxt) in expect.items():
        b = got[row]
        assert (float(b.reward), float(b.done), float(b.discount)) == (ret, done, disc)
        np.testing.assert_array_equal(b.obs.numpy(), obs[row][0])
        np.testing.assert_array_equal(b.next_obs.numpy(), obs[nxt][0])
    np.testing.assert_array_equal(got[2].obs[:, 0, 0].numpy(), [2, 3])  # stack spans the life loss
    np.testing.assert_array_equal(got[4].obs[:, 0, 0].numpy(), [0, 5])  # zero padded after the reset
    assert len(buf) == 5  # host-only count of rows 0..4, including the autoreset row


def test_ring_excludes_overwritten_stacks():
    """After wrapping, a row whose stack reaches an overwritten row is excluded, unless its episode started later."""
    buf = ReplayBuffer(5, 1, (1, 2, 2), 2, n_step=1, gamma=0.5)
    script = [(1.0, False, False, False), (1.0, True, False, False), (0.0, False, False, True)] + [
        (1.0, False, False, False)] * 4
    _stream(buf, 1, script)  # rows 0..7; the ring keeps rows 3..7; row 3 starts an episode, row 7 is pending
    assert sorted(r % 5 for r in [3, 4, 5, 6]) == sorted(_all(buf))
    assert len(buf) == 3  # rows 4..6: the band row 3 is sampleable but not counted
    buf.add(np.array([0]), np.array([1.0]), np.array([False]), np.array([False]), np.array([False]),
            np.zeros((1, 2, 2, 2), np.uint8))  # ring keeps rows 4..8: row 4's stack needs overwritten row 3
    assert sorted(r % 5 for r in [5, 6, 7]) == sorted(_all(buf))


def test_reproducible_and_state_dict_round_trip():
    """Same generator seed -> same batch; a loaded copy samples and continues identically."""
    d = make(*MINATAR, num_envs=4, rows=20, n_step=3)
    d.run(50)
    sample = lambda buf, seed: buf.sample(64, torch.Generator().manual_seed(seed))  # noqa: E731
    a, b = sample(d.buf, 3), sample(d.buf, 3)
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values()))
    assert not torch.equal(a.index, sample(d.buf, 4).index)
    clone = ReplayBuffer(80, 4, MINATAR[0], 1, n_step=3, gamma=0.9, payload=payload_fn(MINATAR[0][0]),
                         payload_shape=(PAYLOAD,))
    clone.load_state_dict({k: v.clone() if torch.is_tensor(v) else v for k, v in d.buf.state_dict().items()})
    c = sample(clone, 3)
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(c).values()))
    obs = d.env.reset()  # resume: both buffers see a fresh env.reset() then the same steps
    for buf in (d.buf, clone):
        buf.start(obs)
    for _ in range(7):
        step = d.env.step(np.arange(4))
        for buf in (d.buf, clone):
            buf.add(np.arange(4), *step[1:], step[0])
    a, c = sample(d.buf, 5), sample(clone, 5)
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(c).values()))
    with pytest.raises(ValueError):
        ReplayBuffer(80, 4, MINATAR[0], 1).load_state_dict(d.buf.state_dict())


def test_tensor_inputs_match_numpy_inputs():
    """Torch-tensor inputs store exactly what numpy inputs store."""
    a, b = make(*ATARI, num_envs=2, rows=12, n_step=3), make(*ATARI, num_envs=2, rows=12, n_step=3)
    a.run(30)
    b.run(30, to_tensor=True)
    for x, y in zip(a.buf.state_dict().values(), b.buf.state_dict().values()):
        assert torch.equal(x, y) if torch.is_tensor(x) else x == y


def test_chosen_fields_are_those_of_the_full_batch():
    """A draw limited to some fields returns them as the full draw with the same uniforms, the others None."""
    driver = make(*ATARI, num_envs=3, rows=12, n_step=3)
    driver.run(20)
    full = driver.buf.sample(16, torch.Generator().manual_seed(4))
    some = driver.buf.sample(16, torch.Generator().manual_seed(4), fields=("obs", "payload"))
    assert torch.equal(some.obs, full.obs) and torch.equal(some.payload, full.payload)
    assert some.action is None and some.next_obs is None and some.index is None
    with pytest.raises(ValueError, match=r"\['value'\].*allowed: obs, action"):
        driver.buf.sample(4, fields=("obs", "value"))
    bare = ReplayBuffer(30, 2, (1, 3, 3), 2)
    bare.start(np.zeros((2, 2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="payload"):
        bare.sample(4, fields=("payload",))


def test_step_arrays_of_the_wrong_shape_are_refused_by_name():
    buf = ReplayBuffer(30, 2, (1, 3, 3), 2)
    buf.start(np.zeros((2, 2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"truncated has shape \(3,\), expected \(2,\)"):
        buf.add(np.zeros(2), np.zeros(2), np.zeros(2, bool), np.zeros(3, bool), np.zeros(2, bool),
                np.zeros((2, 2, 3, 3), np.uint8))


def test_empty_and_validation_errors():
    """Sampling before anything is sampleable fails; misuse is rejected."""
    buf = ReplayBuffer(30, 2, (1, 3, 3), 4, n_step=3)
    with pytest.raises(RuntimeError):
        buf.add(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros((2, 4, 3, 3)))
    buf.start(np.zeros((2, 4, 3, 3), np.uint8))
    with pytest.raises(ValueError):
        buf.sample(4)
    buf.add(np.zeros(2), np.zeros(2), np.zeros(2, bool), np.zeros(2, bool), np.zeros(2, bool),
            np.zeros((2, 4, 3, 3), np.uint8))
    assert len(buf) == 0
    with pytest.raises(RuntimeError):
        buf.sample(4)
    with pytest.raises(ValueError):
        buf.start(np.zeros((2, 1, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="together"):  # a payload function without its shape
        ReplayBuffer(30, 2, (1, 3, 3), 4, payload=payload_fn(1))
    with pytest.raises(ValueError):
        ReplayBuffer(8, 2, (1, 3, 3), 4)


def test_one_million_atari_transitions_fit_in_7_5_gb():
    """Frames dominate: about 7.06 GB plus a few bytes per transition (meta device: nothing allocated)."""
    buf = ReplayBuffer(1_000_000, 8, (1, 84, 84), 4, "meta", n_step=3, payload=payload_fn(1), payload_shape=(18,))
    assert buf.nbytes < 7.5e9
    assert buf.nbytes - 1_000_000 * 84 * 84 < 100e6


@pytest.mark.slow
def test_long_stream_many_envs():
    """A longer wrapping stream with many envs and long episodes stays exact."""
    d = make(*ATARI, num_envs=32, rows=16, n_step=3, seed=7, max_len=30)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        d.run(10)
        check_batch(d.buf.sample(256, g), d.sampleable(), d)


@pytest.mark.parametrize(("layout", "n_step"), [(MINATAR, 1), (ATARI_SMALL, 1), (ATARI_SMALL, 3)])
def test_config_bound_is_what_a_full_replay_can_sample(layout, n_step):
    """The config's batch_size bound (sampleable_transitions) is len() of a full, wrapped replay, so once learning
    starts with a batch the config accepts it never stops for lack of transitions (before the ring wraps, len()
    is larger)."""
    rows, num_envs = 12, 3
    d = make(*layout, num_envs=num_envs, rows=rows, n_step=n_step, seed=3)
    lengths = []
    for _ in range(4 * rows):
        d.run(1)
        lengths.append(len(d.buf))
    bound = sampleable_transitions(rows * num_envs, num_envs, layout[1], n_step)
    assert set(lengths[2 * rows:]) == {bound} and min(lengths[rows:]) == bound
