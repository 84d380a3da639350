"""Stable-Baselines3 baselines behind the agent protocol: PPO from scratch and multi-task PPO.

``transfer`` moves parameters between our Gaussian MLP policy and SB3's actor (and our episodes
into SB3's rollout buffer), ``multitask_env`` turns a task family into one environment that draws
a train task at every reset, and ``ppo`` holds the two agents.
"""

from agents.sb3.multitask_env import TaskResampling, make_multitask_env
from agents.sb3.ppo import PPOConfig, PPOMultiTask, PPOMultiTaskConfig, PPOScratch

__all__ = [
    "PPOConfig",
    "PPOMultiTask",
    "PPOMultiTaskConfig",
    "PPOScratch",
    "TaskResampling",
    "make_multitask_env",
]
