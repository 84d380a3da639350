"""The manipulation task families: their parameters, splits and Meta-World-style benchmark sets.

Coordinates are metres in the table frame: the table top is ``z = 0``, the robot stands on the
``-x`` side, so goals lie ahead of the objects along ``+x``. Task parameters are scalars per axis
(``goal_x``, ``goal_y``, ...) because each axis has its own range.

Splits are the checkerboard of :class:`~metarobot.tasks.SplitRule` over all of a family's
parameters, so train and test tasks are disjoint by construction. As in Meta-World's ML1, each
family also has canonical sets of 50 train and 50 test tasks,
:meth:`BenchmarkFamily.benchmark_tasks`, which are ``sample_tasks(50, split, seed=42)`` (42 is
the seed of Meta-World's README); ``sample_tasks`` draws as many more as wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metarobot.tasks import ParamSpec, Split, SplitRule, Task, TaskFamily

BENCHMARK_SIZE = 50
BENCHMARK_SEED = 42

# Where the hand starts (plus a little seeded noise) and where its mocap target may go: a box
# over the table that keeps the fingertips (2 cm below the tool centre point) above the table.
HAND_START = np.array([-0.15, 0.0, 0.15])
WORKSPACE_LOW = np.array([-0.25, -0.3, 0.02])
WORKSPACE_HIGH = np.array([0.25, 0.3, 0.35])

# Reach keeps the object on the table, unused, as Meta-World's reach-v3 does (below the hand's
# path to any goal, so the scene and observation layout are those of the other families).
REACH_OBJECT_XY = (-0.05, 0.0)


@dataclass(frozen=True)
class BenchmarkFamily(TaskFamily):
    """A family with fixed, disjoint benchmark sets of 50 train and 50 test tasks (ML1-style).

    Attributes:
        benchmark_seed: Seed of the canonical draw.
    """

    benchmark_seed: int = BENCHMARK_SEED

    def benchmark_tasks(self, split: Split) -> list[Task]:
        """The canonical 50 tasks of ``split``: ``sample_tasks(50, split, benchmark_seed)``.

        Report results on these (train on the train set, adapt and evaluate on the test set)
        so that numbers are comparable across papers and runs, as with Meta-World's ML1.
        """
        return self.sample_tasks(BENCHMARK_SIZE, split, seed=self.benchmark_seed)


def axis_specs(
    name: str, low: tuple[float, ...], high: tuple[float, ...], doc: str
) -> list[ParamSpec]:
    """One scalar spec per axis, ``<name>_x``, ``<name>_y``[, ``<name>_z``]."""
    return [
        ParamSpec(f"{name}_{axis}", lo, hi, doc=f"{doc} {axis} (m)")
        for axis, lo, hi in zip("xyz", low, high, strict=False)
    ]


def vector(task: Task, name: str, size: int) -> np.ndarray:
    """The per-axis parameters ``<name>_x, <name>_y[, <name>_z]`` of a task as one array."""
    return np.array([task.scalar(f"{name}_{axis}") for axis in "xyz"[:size]])


_OBJECT_ON_TABLE = axis_specs("object", (-0.1, -0.15), (0.0, 0.15), "object start")
_GOAL_ON_TABLE = axis_specs("goal", (0.1, -0.15), (0.2, 0.15), "goal")
_GOAL_IN_AIR = axis_specs("goal", (0.1, -0.15, 0.1), (0.2, 0.15, 0.3), "goal")

# The object multipliers are log-uniform, so that halving and doubling are equally likely; the
# nominal object is the 50 g, 4 cm cube of tabletop_cube.xml with friction 0.5.
OBJECT_PHYSICS_SPECS = [
    ParamSpec("mass", 1 / 3, 3.0, log=True, doc="object mass multiplier (nominal 50 g)"),
    ParamSpec("size", 0.8, 1.25, log=True, doc="object size multiplier (nominal 4 cm)"),
    ParamSpec("friction", 0.5, 2.0, log=True, doc="object friction multiplier (nominal 0.5)"),
]


def _family(name: str, specs: list[ParamSpec], doc: str) -> BenchmarkFamily:
    """A tabletop family: checkerboard splits (~20% test) and Meta-World-like 150-step episodes."""
    return BenchmarkFamily(
        name=name,
        specs=tuple(specs),
        split_rule=SplitRule(cells=10, period=5),
        horizon=150,
        doc=doc,
    )


REACH = _family(
    "Reach",
    axis_specs("goal", (0.0, -0.2, 0.05), (0.2, 0.2, 0.3), "goal"),
    "move the gripper to an unobserved goal in the air; success within 5 cm",
)
PUSH = _family(
    "Push",
    [*_OBJECT_ON_TABLE, *_GOAL_ON_TABLE],
    "push a puck to an unobserved goal on the table; success within 5 cm (in the plane)",
)
PICK_PLACE = _family(
    "PickPlace",
    [*_OBJECT_ON_TABLE, *_GOAL_IN_AIR],
    "grasp a cube and carry it to an unobserved goal in the air; success within 5 cm",
)
PICK_PLACE_PARAMS = _family(
    "PickPlaceParams",
    [*_OBJECT_ON_TABLE, *_GOAL_IN_AIR, *OBJECT_PHYSICS_SPECS],
    "PickPlace with the cube's mass, size and friction varied in place on the model",
)
