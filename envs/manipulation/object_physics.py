"""The object's mass, size and friction as data: which model fields, scaled by which multipliers.

A physics task is three multipliers (``mass``, ``size``, ``friction``). Each varied ``MjModel``
field of the object is its pristine value times a product of powers of them, listed in
:data:`OBJECT_FIELDS`: inertia goes with mass times size squared, the collision bounds
(``geom_rbound``, ``geom_aabb``) with size, like the geometry itself. Values are always computed
from the pristine model, in place (never rebuilt), so setting the nominal multipliers restores the
model bit for bit; the same table applies per world in a batched simulator (MuJoCo Warp batches
``body_mass``, ``geom_size``, ``geom_friction``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import mujoco


@dataclass(frozen=True)
class ScaledField:
    """One ``MjModel`` field of the object and how the task's multipliers scale it.

    Attributes:
        field: ``MjModel`` attribute, e.g. ``"body_inertia"``.
        element: Whether the row is the object's body or its geom.
        powers: ``(multiplier, exponent)`` pairs; the row is multiplied by their product.
    """

    field: str
    element: Literal["body", "geom"]
    powers: tuple[tuple[str, int], ...]

    def factor(self, multipliers: Mapping[str, float]) -> float:
        """The scale of this field's row under ``multipliers``."""
        return math.prod(multipliers[name] ** exponent for name, exponent in self.powers)


OBJECT_FIELDS: tuple[ScaledField, ...] = (
    ScaledField("body_mass", "body", (("mass", 1),)),
    ScaledField("body_inertia", "body", (("mass", 1), ("size", 2))),
    ScaledField("geom_size", "geom", (("size", 1),)),
    ScaledField("geom_rbound", "geom", (("size", 1),)),
    ScaledField("geom_aabb", "geom", (("size", 1),)),
    # Sliding, torsional and rolling coefficients alike; the object's geom has contact priority,
    # so its friction governs the grasp as well as sliding on the table.
    ScaledField("geom_friction", "geom", (("friction", 1),)),
)

NOMINAL = {"mass": 1.0, "size": 1.0, "friction": 1.0}


class ObjectPhysics:
    """Applies multipliers to one object's fields of a compiled model, from pristine values.

    Args:
        model: The compiled model, changed in place.
        body: Name of the object's body, which holds one geom at its origin.
    """

    def __init__(self, model: mujoco.MjModel, body: str):
        self._model = model
        # mj_setConst works on a data of its own: MuJoCo 3.3 re-anchors equality constraints
        # (the hand's connect to its mocap target) at the data's mocap poses, which must be the
        # model's defaults for the result to be the compiled model's.
        self._scratch = mujoco.MjData(model)
        body_id = model.body(body).id
        if model.body_geomnum[body_id] != 1:
            raise ValueError(f"body {body!r} must hold exactly one geom to be scaled")
        self._rows = {"body": body_id, "geom": int(model.body_geomadr[body_id])}
        self._pristine = {
            f.field: getattr(model, f.field)[self._rows[f.element]].copy() for f in OBJECT_FIELDS
        }

    def apply(self, multipliers: Mapping[str, float]) -> None:
        """Scale every field in :data:`OBJECT_FIELDS` from its pristine value."""
        for f in OBJECT_FIELDS:
            getattr(self._model, f.field)[self._rows[f.element]] = self._pristine[
                f.field
            ] * f.factor(multipliers)
        # Derived constants (subtree masses, inverse inertias that scale constraint impedance)
        # follow the new mass and inertia; recomputing them from pristine values is exact.
        mujoco.mj_resetData(self._model, self._scratch)
        mujoco.mj_setConst(self._model, self._scratch)
