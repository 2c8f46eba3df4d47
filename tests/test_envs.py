"""Tests for the env layer (``envs``): names, presets, action sets, ALE and MinAtar vector envs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from envs import (
    PRESETS,
    Preset,
    StepResult,
    VectorEnv,
    action_index_map,
    game_action_ids,
    get_preset,
    is_minatar,
    make_vector,
    resolve_game,
    safe_name,
    union_actions,
)

NOOP, FIRE, UP, RIGHT, LEFT, DOWN = 0, 1, 2, 3, 4, 5


def _plain(preset="nature", **kw) -> Preset:
    """A preset with the randomness and reset tricks off (deterministic, comparable)."""
    base = dict(noop_max=0, fire_reset=False, sticky_action_prob=0.0)
    base.update(kw)
    return dataclasses.replace(get_preset(preset), name="test", **base)


def _stack_continues(prev: np.ndarray, cur: np.ndarray, c: int = 1) -> np.ndarray:
    """Per env: the new stack is the old one shifted by one frame."""
    return np.all((cur[:, :-c] == prev[:, c:]).reshape(len(cur), -1), axis=1)


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("name,canon", [
    ("Pong", "Pong"), ("pong", "Pong"), ("ALE/Pong-v5", "Pong"), ("PongNoFrameskip-v4", "Pong"),
    ("BreakoutDeterministic-v4", "Breakout"), ("space_invaders", "SpaceInvaders"),
    ("SpaceInvaders", "SpaceInvaders"), ("ALE/MsPacman-v5", "MsPacman"), ("ms_pacman", "MsPacman"),
    ("MinAtar/breakout", "MinAtar/Breakout"), ("minatar/space_invaders", "MinAtar/SpaceInvaders"),
    ("MinAtar/SpaceInvaders", "MinAtar/SpaceInvaders"), ("MinAtar/Asterix-v1", "MinAtar/Asterix"),
    ("MINATAR/seaquest", "MinAtar/Seaquest"), ("minatar/Freeway", "MinAtar/Freeway"),
])
def test_resolve_game(name, canon):
    assert resolve_game(name) == canon
    assert resolve_game(canon) == canon  # idempotent
    assert is_minatar(name) == canon.startswith("MinAtar/")


def test_safe_name():
    assert safe_name("minatar/space_invaders") == "MinAtar-SpaceInvaders"
    assert safe_name("ALE/Pong-v5") == "Pong"
    assert "/" not in safe_name("MinAtar/Breakout")


@pytest.mark.parametrize("bad,suggestion", [
    ("Breakot", "Breakout"), ("spaceinvader", "SpaceInvaders"), ("MinAtar/Breakot", "MinAtar/Breakout"),
    ("minatar/spaceinvader", "MinAtar/SpaceInvaders"),
])
def test_resolve_game_unknown_suggests(bad, suggestion):
    with pytest.raises(ValueError) as ei:
        resolve_game(bad)
    assert suggestion in str(ei.value)


@pytest.mark.parametrize("bad", ["", "NotAGame123", "MinAtar/Pong"])
def test_resolve_game_unknown(bad):
    with pytest.raises(ValueError):
        resolve_game(bad)


# ----------------------------------------------------------------------------- presets
def test_presets_contents():
    assert set(PRESETS) >= {"nature", "machado", "minatar"}
    n, m, mi = get_preset("nature"), get_preset("machado"), get_preset("minatar")
    assert (n.sticky_action_prob, n.frame_skip, n.max_pool, n.noop_max, n.frame_stack) == (0.0, 4, True, 30, 4)
    assert n.episodic_life and n.clip_rewards and not n.full_action_space and n.grayscale
    assert n.max_episode_frames == 108_000 and n.image_size == 84
    assert m.sticky_action_prob == 0.25 and not m.episodic_life and m.full_action_space
    assert m.noop_max == 0 and not m.fire_reset and m.max_episode_frames == 108_000
    assert mi.platform == "minatar" and mi.sticky_action_prob == 0.1 and mi.difficulty_ramping
    assert mi.frame_skip == 1 and mi.frame_stack == 1 and not mi.clip_rewards
    assert get_preset("Nature") is n and get_preset(n) is n


def test_preset_dict_roundtrip_and_frozen():
    p = get_preset("machado")
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Preset.from_dict(d) == p
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.frame_skip = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        Preset.from_dict({**d, "bogus": 1})


def test_preset_validation_and_unknown():
    with pytest.raises(ValueError, match="natur"):
        get_preset("natur")
    with pytest.raises(ValueError):
        dataclasses.replace(get_preset("nature"), sticky_action_prob=1.5)
    with pytest.raises(ValueError):
        dataclasses.replace(get_preset("nature"), frame_skip=0)
    with pytest.raises(ValueError):
        dataclasses.replace(get_preset("nature"), platform="nes")


def test_preset_platform_mismatch():
    with pytest.raises(ValueError):
        make_vector("Breakout", "minatar", 1, 0)
    with pytest.raises(ValueError):
        make_vector("MinAtar/Breakout", "nature", 1, 0)
    with pytest.raises(ValueError):
        game_action_ids("MinAtar/Breakout", "machado")


# ----------------------------------------------------------------------------- actions
def test_action_sets():
    assert game_action_ids("Breakout", "nature") == (NOOP, FIRE, RIGHT, LEFT)
    assert game_action_ids("Pong", "nature") == (0, 1, 3, 4, 11, 12)
    assert game_action_ids("Breakout", "machado") == tuple(range(18))
    # MinAtar: n,l,u,r,d,f -> 0,4,2,3,5,1 in the game's minimal-action order
    assert game_action_ids("MinAtar/Breakout", "minatar") == (NOOP, LEFT, RIGHT)
    assert game_action_ids("MinAtar/SpaceInvaders", "minatar") == (NOOP, LEFT, RIGHT, FIRE)
    assert game_action_ids("MinAtar/Freeway", "minatar") == (NOOP, UP, DOWN)
    assert game_action_ids("MinAtar/Asterix", "minatar") == (NOOP, LEFT, UP, RIGHT, DOWN)
    assert game_action_ids("MinAtar/Seaquest", "minatar") == (NOOP, LEFT, UP, RIGHT, DOWN, FIRE)
    full = dataclasses.replace(get_preset("minatar"), full_action_space=True)
    assert game_action_ids("MinAtar/Breakout", full) == (NOOP, LEFT, UP, RIGHT, DOWN, FIRE)


def test_union_and_index_map():
    b = game_action_ids("MinAtar/Breakout", "minatar")  # (0, 4, 3)
    s = game_action_ids("MinAtar/SpaceInvaders", "minatar")  # (0, 4, 3, 1)
    f = game_action_ids("MinAtar/Freeway", "minatar")  # (0, 2, 5)
    u = union_actions([b, s, f])
    assert u == (0, 1, 2, 3, 4, 5)
    assert action_index_map(u, b) == [0, 4, 3]
    assert action_index_map(u, f) == [0, 2, 5]
    u2 = union_actions([(0, 1, 3, 4), (0, 1, 3, 4, 11, 12)])
    assert u2 == (0, 1, 3, 4, 11, 12)
    assert action_index_map(u2, (0, 1, 3, 4)) == [0, 1, 2, 3]
    assert action_index_map(u2, (12, 0)) == [5, 0]
    assert union_actions([]) == ()
    with pytest.raises(ValueError):
        action_index_map((0, 1), (0, 3))
    with pytest.raises(ValueError):
        union_actions([(0, 18)])


# ----------------------------------------------------------------------------- ALE env layer
def test_ale_env_attributes_and_reset_padding():
    with make_vector("ALE/Breakout-v5", "nature", 3, seed=1) as env:
        assert isinstance(env, VectorEnv)
        assert env.game == "Breakout" and env.preset.name == "nature"
        assert env.num_envs == 3 and env.action_ids == (0, 1, 3, 4) and env.n_actions == 4
        assert env.obs_shape == (4, 84, 84) and env.frame_channels == 1
        obs = env.reset()
        assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
        assert not obs[:, :3].any() and obs[:, 3].any()  # zero padded before the first frame
        r = env.step(np.zeros(3, dtype=np.int64))
        assert isinstance(r, StepResult)
        assert r.obs.shape == (3, 4, 84, 84) and r.obs.dtype == np.uint8
        assert r.reward.dtype == np.float32 and r.raw_reward.dtype == np.float32
        for a in (r.terminated, r.truncated, r.autoreset, r.game_over):
            assert a.dtype == np.bool_ and a.shape == (3,)
        assert not r.obs[:, :2].any() and r.obs[:, 2:].any()
    with make_vector("Pong", "machado", 2, seed=0) as env:
        assert env.n_actions == 18 and env.action_ids == tuple(range(18))


def test_ale_api_errors():
    env = make_vector("Breakout", "nature", 2, seed=0)
    with pytest.raises(RuntimeError):
        env.step(np.zeros(2, dtype=np.int64))  # before reset
    env.reset()
    with pytest.raises(ValueError):
        env.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError):
        env.step(np.array([0, 4]))
    with pytest.raises(TypeError):
        env.step(np.zeros(2, dtype=np.float32))
    with pytest.raises(RuntimeError):
        env.recv()
    env.close()
    with pytest.raises(RuntimeError):
        env.reset()


def test_ale_matches_gymnasium_pipeline():
    """Same frames as gymnasium's AtariPreprocessing + FrameStackObservation(zero padding)
    where the settings coincide (no no-ops, no sticky actions, no FIRE reset, no life signal).

    Measured: the observations are bit-identical (both use OpenCV INTER_AREA on ALE's grayscale
    palette and max-pool the last two frames), so the tolerance is exact equality.
    """
    cv2 = pytest.importorskip("cv2")  # noqa: F841  (gymnasium's AtariPreprocessing needs it)
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)
    p = _plain("nature", episodic_life=False, clip_rewards=False)
    env = make_vector("Breakout", p, 2, seed=3)
    g = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0,
                 full_action_space=False, max_num_frames_per_episode=108_000)
    g = AtariPreprocessing(g, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
                           grayscale_obs=True, scale_obs=False)
    g = FrameStackObservation(g, stack_size=4, padding_type="zero")
    obs = env.reset()
    og, _ = g.reset(seed=5)
    assert og.shape == obs.shape[1:]
    np.testing.assert_array_equal(obs[0], og)
    rng = np.random.default_rng(0)
    steps, total = 0, 0.0
    while True:
        a = int(rng.integers(env.n_actions))
        r = env.step(np.array([a, a]))
        og, rg, tg, trg, _ = g.step(a)
        steps += 1
        total += rg
        np.testing.assert_array_equal(r.obs[0], og, err_msg=f"step {steps}")
        np.testing.assert_array_equal(r.obs[1], og)
        assert r.raw_reward[0] == rg
        assert bool(r.terminated[0]) == tg and bool(r.truncated[0]) == trg
        if tg or trg:
            break
        assert steps < 5000
    assert r.game_over[0] and r.finished[0][0] == 0 and r.finished[0][1] == total
    g.close()
    env.close()


@pytest.mark.slow
@pytest.mark.parametrize("game,grayscale", [("SpaceInvaders", True), ("Pong", True), ("Breakout", False)])
def test_ale_matches_gymnasium_pipeline_more(game, grayscale):
    """As above for more games and for RGB frames ((stack*3, H, W) channels-first here)."""
    pytest.importorskip("cv2")
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)
    p = _plain("nature", episodic_life=False, clip_rewards=False, grayscale=grayscale)
    env = make_vector(game, p, 1, seed=0)
    g = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0)
    g = AtariPreprocessing(g, noop_max=0, frame_skip=4, terminal_on_life_loss=False,
                           grayscale_obs=grayscale)
    g = FrameStackObservation(g, stack_size=4, padding_type="zero")

    def conv(x):
        return x if grayscale else x.transpose(0, 3, 1, 2).reshape(12, 84, 84)

    np.testing.assert_array_equal(env.reset()[0], conv(g.reset(seed=0)[0]))
    rng = np.random.default_rng(1)
    for _ in range(3000):
        a = int(rng.integers(env.n_actions))
        r = env.step(np.array([a]))
        og, rg, tg, trg, _ = g.step(a)
        np.testing.assert_array_equal(r.obs[0], conv(og))
        assert r.raw_reward[0] == rg and bool(r.terminated[0]) == tg
        if tg or trg:
            break
    env.close()


def test_raw_rewards_not_clipped_and_returns():
    """SpaceInvaders scores 5..30 per alien: raw_reward > 1 while reward is its sign; a finished game
    reports the raw sum over the whole game and the sum of its clipped rewards."""
    env = make_vector("SpaceInvaders", "nature", 4, seed=0)
    env.reset()
    rng = np.random.default_rng(1)
    sums, clipped_sums = np.zeros(4), np.zeros(4)
    seen_big, games = False, []
    for _ in range(5000):
        r = env.step(rng.integers(0, env.n_actions, 4))
        np.testing.assert_array_equal(r.reward, np.sign(r.raw_reward))
        seen_big |= bool((r.raw_reward > 1).any())
        sums += r.raw_reward
        clipped_sums += r.reward
        for ended in r.finished:
            assert ended.raw_return == sums[ended.index] and ended.clipped_return == clipped_sums[ended.index]
            games.append(ended)
            sums[ended.index] = clipped_sums[ended.index] = 0
        if seen_big and games:
            break
    assert seen_big and games and games[0].raw_return > games[0].clipped_return > 0
    env.close()


def test_life_loss_episodic_life_and_full_game_return():
    """Breakout under ``nature``: a life loss sets terminated but not game_over, does not reset
    (lives go on, stack shifts by one frame, next step is no autoreset); the game's reported
    return is the raw sum over all its lives; game over -> next step autoresets."""
    env = make_vector("Breakout", "nature", 2, seed=7)
    obs = env.reset()
    rng = np.random.default_rng(2)
    ret = np.zeros(2)
    length = np.zeros(2, dtype=int)
    life_losses = np.zeros(2, dtype=int)
    prev_game_over = np.zeros(2, dtype=bool)
    finished = []
    for _ in range(3000):
        r = env.step(rng.integers(0, env.n_actions, 2))
        np.testing.assert_array_equal(r.autoreset, prev_game_over)
        normal = ~r.autoreset
        assert np.all(_stack_continues(obs, r.obs)[normal])
        if r.autoreset.any():
            assert not r.obs[r.autoreset, :3].any()
            assert not r.raw_reward[r.autoreset].any() and not r.terminated[r.autoreset].any()
        ll = r.terminated & ~r.game_over
        np.testing.assert_array_equal(ll, r.life_loss & ~r.game_over)
        life_losses += ll
        ret += r.raw_reward
        length += normal
        for i, g_ret, g_len, _clipped in r.finished:
            assert g_ret == ret[i] and g_len == length[i]
            finished.append((i, life_losses[i]))
            ret[i], length[i], life_losses[i] = 0, 0, 0
        assert not (r.game_over & ~r.terminated & ~r.truncated).any()
        prev_game_over = r.game_over.copy()
        obs = r.obs
        if len(finished) >= 2:
            break
    assert len(finished) >= 2
    # Breakout has 5 lives: 4 life-loss terminals before the game-over terminal.
    assert all(n == 4 for _, n in finished)
    env.close()


def test_no_life_signal_without_episodic_life():
    env = make_vector("Breakout", _plain("machado"), 1, seed=0)
    env.reset()
    for _ in range(3000):
        r = env.step(np.array([FIRE]))  # FIRE only: the ball is launched and missed
        if r.life_loss[0] and not r.game_over[0]:
            assert not r.terminated[0]
            break
    else:
        pytest.fail("no life loss observed")
    env.close()


def test_truncation_at_cap_then_autoreset():
    p = _plain("nature", max_episode_frames=100)  # 100 frames / frame skip 4 = 25 steps
    env = make_vector("Pong", p, 2, seed=0)
    env.reset()
    for t in range(25):
        r = env.step(np.zeros(2, dtype=np.int64))
        if t < 24:
            assert not r.truncated.any() and not r.game_over.any()
    assert r.truncated.all() and r.game_over.all() and not r.terminated.any()
    assert sorted(f[0] for f in r.finished) == [0, 1] and all(f[2] == 25 for f in r.finished)
    r = env.step(np.zeros(2, dtype=np.int64))
    assert r.autoreset.all() and not r.truncated.any() and not r.raw_reward.any()
    assert not r.obs[:, :3].any()
    r = env.step(np.zeros(2, dtype=np.int64))
    assert not r.autoreset.any()
    env.close()


def test_send_recv_matches_step_and_seeding():
    """Seeded runs repeat exactly, stepped by step() or send/recv, with any number of ALE worker threads."""
    rng = np.random.default_rng(3)
    actions = rng.integers(0, 4, size=(60, 3))

    def run(seed, async_=False, threads=0):
        env = make_vector("Breakout", "nature", 3, seed=seed, num_threads=threads)
        out = [env.reset()]
        for a in actions:
            if async_:
                env.send(a)
                r = env.recv()
            else:
                r = env.step(a)
            out.append(r.obs)
        env.close()
        return np.stack(out)

    a = run(11)
    np.testing.assert_array_equal(a, run(11, async_=True))  # deterministic + send/recv == step
    np.testing.assert_array_equal(a, run(11, async_=True, threads=1))  # whatever the worker threads (env_threads)
    # seeds derive distinct no-op starts per env: envs of one vector differ
    assert not np.array_equal(a[:, 0], a[:, 1]) or not np.array_equal(a[:, 1], a[:, 2])


def test_reset_with_seed_is_reproducible():
    env = make_vector("Breakout", "nature", 2, seed=0)
    rng = np.random.default_rng(4)
    acts = rng.integers(0, 4, size=(30, 2))
    seqs = []
    for _ in range(2):
        out = [env.reset(seed=123)]
        out += [env.step(a).obs for a in acts]
        seqs.append(np.stack(out))
    np.testing.assert_array_equal(seqs[0], seqs[1])
    env.close()


# ----------------------------------------------------------------------------- MinAtar
@pytest.mark.parametrize("game", ["MinAtar/Breakout", "MinAtar/SpaceInvaders", "MinAtar/Freeway",
                                  "MinAtar/Asterix", "MinAtar/Seaquest"])
def test_minatar_env(game):
    env = make_vector(game, "minatar", 3, seed=0)
    c = env.frame_channels
    assert env.obs_shape == (c, 10, 10)
    assert env.action_ids == game_action_ids(game, "minatar")
    obs = env.reset()
    assert obs.shape == (3, c, 10, 10) and obs.dtype == np.uint8 and obs.max() <= 1
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = env.step(rng.integers(0, env.n_actions, 3))
        assert r.obs.shape == (3, c, 10, 10) and set(np.unique(r.obs)) <= {0, 1}
    env.close()


def test_minatar_deterministic_and_returns():
    def run(seed, n=300):
        env = make_vector("MinAtar/Breakout", "minatar", 2, seed=seed)
        rng = np.random.default_rng(9)
        obs, rew, fin = [env.reset()], [], []
        ret = np.zeros(2)
        prev_over = np.zeros(2, dtype=bool)
        for t in range(n):
            r = env.step(rng.integers(0, env.n_actions, 2))
            np.testing.assert_array_equal(r.autoreset, prev_over)
            np.testing.assert_array_equal(r.reward, r.raw_reward)  # minatar preset: no clipping
            ret += r.raw_reward
            for i, g_ret, _, _ in r.finished:
                assert g_ret == ret[i]
                ret[i] = 0
                fin.append((t, i, g_ret))
            prev_over = r.game_over.copy()
            obs.append(r.obs)
            rew.append(r.raw_reward)
        env.close()
        return np.stack(obs), np.stack(rew), fin

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] and len(a[2]) > 0  # random play loses MinAtar Breakout quickly
    assert not np.array_equal(a[0], c[0])


def test_minatar_truncation_and_stack():
    p = dataclasses.replace(get_preset("minatar"), max_episode_frames=10, frame_stack=2,
                            sticky_action_prob=0.0)
    env = make_vector("MinAtar/Freeway", p, 2, seed=0)  # Freeway never ends before 10 steps
    c = env.frame_channels
    assert env.obs_shape == (2 * c, 10, 10)
    obs = env.reset()
    assert not obs[:, :c].any() and obs[:, c:].any()
    for _ in range(10):
        r = env.step(np.full(2, 1))  # UP
        assert np.all(_stack_continues(obs, r.obs, c))
        obs = r.obs
    assert r.truncated.all() and r.game_over.all() and all(f[2] == 10 for f in r.finished)
    r = env.step(np.full(2, 1))
    assert r.autoreset.all() and not r.obs[:, :c].any()
    env.close()


# ----------------------------------------------------------------------------- packaging
def test_envs_does_not_import_project_packages():
    code = ("import sys, envs; envs.make_vector('MinAtar/Breakout', 'minatar', 1, 0).reset();"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('actormimic', 'agents')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("game,preset", [("MinAtar/Breakout", "minatar"), ("Breakout", "nature")])
def test_sticky_probability_reaches_the_backend(game: str, preset: str) -> None:
    """With sticky probability 1 the first action (NOOP) repeats forever: random actions play like all-NOOP."""
    p = _plain(preset, sticky_action_prob=1.0)
    observations = []
    for actions in (np.random.default_rng(0).integers(0, 3, (60, 2)), np.zeros((60, 2), dtype=np.int64)):
        env = make_vector(game, p, 2, seed=5)
        frames = [env.reset(seed=5)]
        frames += [env.step(a).obs for a in actions]
        env.close()
        observations.append(np.stack(frames))
    assert np.array_equal(*observations)
