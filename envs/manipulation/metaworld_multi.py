"""Meta-World's ML10 and ML45 as task families: meta-train on 10 or 45 skills, adapt to 5 others.

A task of ``MetaWorldML10`` or ``MetaWorldML45`` names its skill, ``skill`` (the skill's index in
Meta-World's list of 50, its ``task_id``: ``31`` is ``pick-place-v3``), and that skill's random
vector, named as in the skill's ML1 family (``object_x`` ... and, where the skill draws a goal,
``goal_x`` ...). Its splits are exactly ``metaworld.ML10(seed=42)``'s or
``metaworld.ML45(seed=42)``'s: the train split holds 50 tasks of each meta-training skill, the
test split 50 tasks of each held-out skill, so the splits share no skill. An env of the family
switches skill with its task (:mod:`envs.manipulation.metaworld_envs`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from envs.manipulation.metaworld_tasks import (
    REWARD_VERSION,
    SKILLS,
    MetaWorldFamily,
    MetaWorldSets,
    check_draw,
    shuffled_passes,
    skill_index,
)
from metarobot.tasks import SPLITS, ParamSpec, ParamValue, Split, Task, TaskFamily

SKILL_SPEC = ParamSpec(
    "skill", 0, len(SKILLS) - 1, doc="Meta-World skill: its index (task_id) among Meta-World's 50"
)


@dataclass(frozen=True)
class MultiSkillFamily(MetaWorldFamily):
    """Tasks across several Meta-World skills, train and test skills disjoint (ML10, ML45).

    A task's parameters are ``skill`` and that skill's own: :attr:`param_names` lists every name
    that some skill uses, over the ranges of all skills, and :meth:`skill` says which apply.

    Attributes:
        train_skills: Meta-World's names of the meta-training skills, in its order.
        test_skills: Its names of the held-out skills.
    """

    train_skills: tuple[str, ...] = ()
    test_skills: tuple[str, ...] = ()

    def skills(self, split: Split) -> tuple[int, ...]:
        """Indices of the skills of ``split``, in Meta-World's order."""
        check_draw(split, 0)
        names = self.train_skills if split == "train" else self.test_skills
        return tuple(skill_index(name) for name in names)

    def skill_of(self, params: Mapping[str, object]) -> int:
        """The ``skill`` parameter, checked to be one of the family's skills."""
        value = params.get("skill")
        valid = self.skills("train") + self.skills("test")
        number = float(value) if isinstance(value, int | float | np.number) else float("nan")
        if not number.is_integer() or int(number) not in valid:
            choices = ", ".join(f"{k} ({SKILLS[k].env_name})" for k in sorted(valid))
            raise ValueError(f"{self.name} task 'skill' must be one of {choices}; got {value!r}")
        return int(number)

    def params_of(self, skill: int, vector: tuple[float, ...]) -> dict[str, ParamValue]:
        """``skill`` and the random vector, named as in the skill's ML1 family."""
        return {"skill": float(skill), **dict(zip(SKILLS[skill].param_names, vector, strict=True))}

    def _check_params(self, params: Mapping[str, object]) -> None:
        """The skill, then the names and ranges of that skill's random vector."""
        skill = self.skill_of(params)
        vector = {name: value for name, value in params.items() if name != "skill"}
        _skill_view(self, skill)._check_params(vector)

    def sample_tasks(self, n: int, split: Split = "train", seed: int = 0) -> list[Task]:
        """Draw ``n`` tasks of ``split``, spread evenly over its skills.

        Skills come in shuffled passes, so a meta-batch of ``m`` times the split's number of
        skills holds each skill ``m`` times (as Meta-World+ builds its meta-batches), and each
        skill's 50 tasks in shuffled passes of their own. The first ``k`` tasks of a longer draw
        equal a draw of ``k`` tasks, as for the other families.
        """
        check_draw(split, n)
        stream = SPLITS.index(split)
        skills = self.skills(split)
        vectors: dict[int, list[tuple[float, ...]]] = {k: [] for k in skills}
        for skill, vector in self._sets()[split]:
            vectors[skill].append(vector)
        skill_order = shuffled_passes(np.random.default_rng([seed, stream]), len(skills))
        goal_orders = {
            k: shuffled_passes(
                np.random.default_rng(np.random.SeedSequence([seed, stream], spawn_key=(k,))),
                len(vectors[k]),
            )
            for k in skills
        }
        tasks = []
        for i in range(n):
            skill = skills[next(skill_order)]
            tasks.append(self._task(skill, vectors[skill][next(goal_orders[skill])], split, i))
        return tasks


@functools.cache
def _skill_view(family: MultiSkillFamily, skill: int) -> TaskFamily:
    """The family restricted to one skill, to check a task's vector against that skill's ranges."""
    name = f"{family.name} {SKILLS[skill].env_name}"
    return TaskFamily(name, SKILLS[skill].specs, family.split_rule, family.horizon)


def _union_specs(skills: tuple[str, ...]) -> tuple[ParamSpec, ...]:
    """``skill`` and every vector entry, over the ranges of all ``skills`` (for listings)."""
    specs: dict[str, ParamSpec] = {}
    for spec in (s for name in skills for s in SKILLS[skill_index(name)].specs):
        seen = specs.get(spec.name, spec)
        specs[spec.name] = replace(
            seen, low=min(seen.low, spec.low), high=max(seen.high, spec.high)
        )
    return (SKILL_SPEC, *specs.values())


def _multi_family(
    benchmark: str, train: tuple[str, ...], test: tuple[str, ...]
) -> MultiSkillFamily:
    held_out = ", ".join(name.removesuffix("-v3") for name in test)
    return MultiSkillFamily(
        name=f"MetaWorld{benchmark}",
        specs=_union_specs(train + test),
        split_rule=MetaWorldSets(
            summary=f"Meta-World {benchmark}: 50 tasks of each of {len(train)} train skills; 50 "
            f"tasks of each of {len(test)} held-out test skills ({held_out}); "
            f"metaworld.{benchmark}(seed=42)"
        ),
        horizon=500,
        doc=(
            f"Meta-World {benchmark} (Sawyer arm, {REWARD_VERSION} rewards): meta-train on "
            f"{len(train)} skills, adapt to {len(test)} unseen ones; a task's parameters are its "
            "skill and that skill's own (ranges shown over all skills)"
        ),
        benchmark=benchmark,
        train_skills=train,
        test_skills=test,
    )


# Meta-World's ML10_V3 and ML45_V3 (metaworld/env_dict.py); tests check them against it.
ML10 = _multi_family(
    "ML10",
    train=(
        "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "sweep-v3",
        "basketball-v3",
    ),
    test=("drawer-open-v3", "door-close-v3", "shelf-place-v3", "sweep-into-v3", "lever-pull-v3"),
)  # fmt: skip
ML45 = _multi_family(
    "ML45",
    train=(
        "assembly-v3", "basketball-v3", "button-press-topdown-v3", "button-press-topdown-wall-v3",
        "button-press-v3", "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3",
        "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-open-v3",
        "drawer-close-v3", "drawer-open-v3", "faucet-open-v3", "faucet-close-v3", "hammer-v3",
        "handle-press-side-v3", "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3",
        "lever-pull-v3", "pick-place-wall-v3", "pick-out-of-hole-v3", "push-back-v3",
        "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3", "plate-slide-back-v3",
        "plate-slide-back-side-v3", "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3",
        "stick-push-v3", "stick-pull-v3", "push-wall-v3", "push-v3", "reach-wall-v3", "reach-v3",
        "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3", "window-close-v3",
    ),
    test=("bin-picking-v3", "box-close-v3", "hand-insert-v3", "door-lock-v3", "door-unlock-v3"),
)  # fmt: skip
