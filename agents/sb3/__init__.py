"""Stable-Baselines3 baselines behind the agent protocol: PPO from scratch and multi-task PPO.

``transfer`` moves parameters between our Gaussian MLP policy and SB3's actor (and our episodes
into SB3's rollout buffer), ``multitask_env`` makes a family's env that draws a train task at
every reset ready for SB3, and ``ppo`` holds the two agents.
"""

from agents.sb3.multitask_env import make_multitask_env
from agents.sb3.ppo import PPOConfig, PPOMultiTask, PPOMultiTaskConfig, PPOScratch

__all__ = [
    "PPOConfig",
    "PPOMultiTask",
    "PPOMultiTaskConfig",
    "PPOScratch",
    "make_multitask_env",
]
