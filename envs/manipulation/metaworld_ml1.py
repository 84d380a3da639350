"""Meta-World's 50 ML1 benchmarks as task families (behind the ``metaworld`` extra).

``MetaWorldReach``, ``MetaWorldPush``, ``MetaWorldPickPlace`` ... ``MetaWorldWindowClose``: one
family per Meta-World skill, named after it (``pick-place-v3`` gives ``MetaWorldPickPlace``),
whose tasks are Meta-World's random vectors for that skill, named per axis (``object_x`` ...
``goal_z``; see :data:`~envs.manipulation.metaworld_tasks.SKILLS`).

Their splits are Meta-World's own: the 50 train and 50 test tasks of ``metaworld.ML1(env_name,
seed=42)`` (42 as in Meta-World's README); :meth:`MetaWorldFamily.sample_tasks` draws from the
set of its split. :data:`METAWORLD_FAMILIES` adds ML10 and ML45
(:mod:`envs.manipulation.metaworld_multi`): every Meta-World family, as the registry lists them.
Nothing here imports Meta-World until the sets are first needed; the env classes are in
:mod:`envs.manipulation.metaworld_envs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envs.manipulation.metaworld_multi import ML10, ML45
from envs.manipulation.metaworld_tasks import (
    INSTALL_HINT,
    REWARD_VERSION,
    SKILLS,
    MetaWorldFamily,
    MetaWorldSets,
    Skill,
    import_metaworld,
    metaworld_installed,
    skill_index,
)
from metarobot.tasks import ParamValue, Split

__all__ = [
    "INSTALL_HINT",
    "METAWORLD_FAMILIES",
    "ML1_FAMILIES",
    "ML1Family",
    "import_metaworld",
    "metaworld_installed",
]


@dataclass(frozen=True)
class ML1Family(MetaWorldFamily):
    """One of Meta-World's ML1 benchmarks: one skill, unseen goals; its tasks are exactly ML1's."""

    def skills(self, split: Split) -> tuple[int, ...]:
        """The family's one skill, in both splits."""
        return (skill_index(self.env_name),)

    def skill_of(self, params: Mapping[str, object]) -> int:
        """The family's one skill."""
        return skill_index(self.env_name)

    def params_of(self, skill: int, vector: tuple[float, ...]) -> dict[str, ParamValue]:
        """The random vector, named per axis."""
        return dict(zip(self.param_names, vector, strict=True))


def _ml1_family(skill: Skill) -> ML1Family:
    return ML1Family(
        name=f"MetaWorld{skill.title}",
        specs=skill.specs,
        split_rule=MetaWorldSets(
            summary=f"Meta-World ML1: the 50 train and 50 test tasks of "
            f"metaworld.ML1({skill.env_name!r}, seed=42)"
        ),
        horizon=500,
        doc=f"Meta-World ML1 {skill.env_name} (Sawyer arm, {REWARD_VERSION} rewards): {skill.doc}",
        benchmark="ML1",
        env_name=skill.env_name,
    )


ML1_FAMILIES: tuple[ML1Family, ...] = tuple(_ml1_family(skill) for skill in SKILLS)
"""One ML1 family per skill, in Meta-World's order."""

METAWORLD_FAMILIES: tuple[MetaWorldFamily, ...] = (*ML1_FAMILIES, ML10, ML45)
"""Every Meta-World family: ML1's 50, then ML10 and ML45."""
