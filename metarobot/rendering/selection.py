"""Which task to film: ``test:7``, ``train:3``, ``random`` or a JSON task.

``test:N`` means task ``N`` of the test split drawn with the evaluation seed, exactly the task
that ``metarobot evaluate`` reports as its ``N``-th, so a surprising row of an evaluation table
can be filmed. This module is light (no torch, no MuJoCo) so that the CLI can show its help.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets

from metarobot.tasks import SPLITS, Task, TaskFamily

_TASK_ID = re.compile(r"^(train|test):(\d+)$")

TASK_FORMS = (
    "'test:N' or 'train:N' (task N of the split drawn with the seed, as `metarobot evaluate` "
    "draws them), 'random' (a fresh test task), or a JSON task: a record as stored in run "
    "directories, or its parameters alone, e.g. '{\"goal\": [0.3, -0.2]}'"
)


def select_task(family: TaskFamily, spec: str, seed: int, draw: int = 1) -> Task:
    """Resolve a task specification (see :data:`TASK_FORMS`) for ``family``.

    Args:
        family: The run's task family.
        spec: ``"test:7"``, ``"train:3"``, ``"random"`` or a JSON object.
        seed: Seed of the split draw for ``test:N`` and ``train:N``.
        draw: Tasks drawn at least; families with a few fixed tasks pick them differently for
            different draw sizes, so pass the size of the evaluation whose task ``N`` is meant.

    Raises:
        ValueError: The specification is malformed, or names a task outside the family.
    """
    spec = spec.strip()
    match = _TASK_ID.match(spec)
    if match:
        split, index = match.group(1), int(match.group(2))
        assert split in SPLITS
        return family.sample_tasks(max(index + 1, draw), split, seed=seed)[index]
    if spec == "random":
        task = family.sample_tasks(1, "test", seed=secrets.randbits(63))[0]
        return dataclasses.replace(task, index=-1)
    if spec.startswith("{"):
        return _task_from_json(family, spec)
    raise ValueError(f"invalid task {spec!r}; give {TASK_FORMS}")


def _task_from_json(family: TaskFamily, text: str) -> Task:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"task {text!r} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"a JSON task must be an object, got {text!r}")
    if data.get("family", family.name) != family.name:
        raise ValueError(f"task of family {data['family']!r} given to a {family.name} run")
    params = data.get("params", data if "family" not in data else None)
    if not isinstance(params, dict):
        raise ValueError(
            f"task {text!r} has no 'params' object; {family.name} takes {family.param_names}"
        )
    index = data.get("index", -1) if "params" in data else -1
    if not isinstance(index, int):
        raise ValueError(f"task index must be an int, got {index!r}")
    task = family.make_task(index, **params)
    declared = data.get("split", task.split) if "params" in data else task.split
    if declared != task.split:
        raise ValueError(
            f"task {params} is labelled {declared!r} but lies in the {task.split!r} split"
        )
    return task
