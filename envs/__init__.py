"""Meta-RL task families on MuJoCo, registered with Gymnasium as ``metarobot/<Family>-v0``.

Importing this package registers the ids, so ``gymnasium.make("envs:metarobot/AntGoal-v0")``
works without an explicit import.
"""

from envs.registry import FAMILIES, env_class, get_family, make, register_all

register_all()

__all__ = ["FAMILIES", "env_class", "get_family", "make"]
