"""Time the distill loop's replay recording (with expert payloads) and draw+update on the CPU, old or new API."""
import sys, time, json
import numpy as np, torch
torch.set_num_threads(1)
from actormimic.replay import ReplayBuffer
from agents.networks import QNetwork
from agents.amn import Student, ActorMimicLearner
new = hasattr(ReplayBuffer, "deferred")
N, games, shape = 8, {"A": [0, 1, 2, 3, 4, 5], "B": [0, 1, 2, 3, 4, 5]}, (10, 10, 10)
experts = {g: QNetwork("minatar", shape, 6).eval().requires_grad_(False) for g in games}
q = {g: (lambda e: (lambda obs: e(obs)))(experts[g]) for g in games}
bufs = {g: ReplayBuffer(100000, N, shape, 1, n_step=1, **({"payload": q[g]} if new else {}), payload_shape=(6,)) for g in games}
student = Student("minatar", shape, list(games), games)
learner = ActorMimicLearner(student, loss=sys.argv[1], temperature=1.0, temperature_on="teacher", lr=1e-4, adam_eps=1e-8, max_grad_norm=10.0)
rng = np.random.default_rng(0)
obs = {g: torch.from_numpy(rng.integers(0, 2, (N, *shape), dtype=np.uint8)) for g in games}
for g in games: bufs[g].start(obs[g])
def record():
    for g in games:
        a = torch.from_numpy(rng.integers(0, 6, N)); r = np.zeros(N, np.float32); f = np.zeros(N, bool)
        if new: bufs[g].add(a, r, f, f, f, obs[g])
        else:
            with torch.no_grad(): p = q[g](obs[g])
            bufs[g].add(a, r, f, f, f, obs[g], payload=p)
gen = torch.Generator().manual_seed(0)
def update(step):
    if new:
        learner.update({g: bufs[g].deferred(32, ("obs", "payload")) for g in games}, step, count=2, generator=gen)
    else:
        learner.update({g: bufs[g].sample(32, gen, ("obs", "payload")) for g in games}, step, count=2)
for i in range(500): record()
for i in range(20): update(i)
out = {}
for name, fn in (("record", lambda i: record()), ("update", update)):
    t = time.perf_counter()
    for i in range(300): fn(i)
    out[name] = (time.perf_counter() - t) / 300 * 1e3
print(json.dumps({"new": new, "loss": sys.argv[1], **{k: round(v, 3) for k, v in out.items()}}))
