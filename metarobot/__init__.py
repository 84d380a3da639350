"""metarobot: meta reinforcement learning on simulated MuJoCo robots.

Importing this package is cheap on purpose: torch, MuJoCo and Gymnasium load only in the modules
that need them, so ``metarobot list`` and the task records stay fast.
"""

from metarobot.tasks import ParamSpec, SplitRule, Task, TaskFamily

__all__ = ["ParamSpec", "SplitRule", "Task", "TaskFamily"]
__version__ = "0.1.0"
