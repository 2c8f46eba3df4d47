"""Networks and agents: Nature/MinAtar Q-networks, DQN, the Actor-Mimic student and frozen experts."""

from agents.amn import Student
from agents.dqn import DQN, epsilon_schedule
from agents.experts import Expert, load_expert, save_expert
from agents.networks import (MinAtarTorso, NatureTorso, QNetwork, arch_for_obs_shape, exploration_uniforms,
                             explore_or_greedy, set_precision)

__all__ = [
    "DQN",
    "Expert",
    "MinAtarTorso",
    "NatureTorso",
    "QNetwork",
    "Student",
    "arch_for_obs_shape",
    "epsilon_schedule",
    "exploration_uniforms",
    "explore_or_greedy",
    "load_expert",
    "save_expert",
    "set_precision",
]
