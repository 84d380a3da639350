"""Tabletop manipulation families with a real two-finger gripper (Meta-World ML1 in spirit).

``Reach``, ``Push``, ``PickPlace`` and ``PickPlaceParams`` (see :mod:`envs.manipulation.tabletop`)
share one light MJCF scene (``envs/assets/tabletop*.xml``), the action and observation layout of
:mod:`envs.manipulation.robot`, fixed benchmark sets of 50 train and 50 test tasks
(:meth:`BenchmarkFamily.benchmark_tasks`) and scripted controllers that solve them
(:mod:`envs.manipulation.controllers`).
"""

from envs.manipulation.families import (
    PICK_PLACE,
    PICK_PLACE_PARAMS,
    PUSH,
    REACH,
    BenchmarkFamily,
)

__all__ = ["PICK_PLACE", "PICK_PLACE_PARAMS", "PUSH", "REACH", "BenchmarkFamily"]
