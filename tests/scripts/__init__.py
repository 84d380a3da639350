"""Tests of ``scripts/``, which is not a package: each test loads its script by path."""

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` as the module ``name``.

    ``scripts/`` goes on the path, as ``python scripts/<name>.py`` puts it, for the scripts
    that import a sibling.
    """
    if str(ROOT / "scripts") not in sys.path:
        sys.path.append(str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def evaluated_returns(table: Path) -> list[tuple[dict[str, Any], int, float]]:
    """The ``| checkpoint | step | return |`` rows of a measurement table in a run folder.

    Each comes as the folder's evaluation of that checkpoint (with its trained step size), the
    adaptation step and the table's return, for a test to compare with the evaluation's.
    """
    evaluated_with = load_script("reproduce").evaluated_with
    evaluations = {}
    for path in table.parent.glob("*.json"):
        result = json.loads(path.read_text())
        evaluations[evaluated_with(result)] = result
    rows = re.findall(r"^\| (\d+) \| (\d) \| (-?[\d.]+) \|", table.read_text(), re.MULTILINE)
    return [
        (evaluations[(int(checkpoint), None)], int(step), float(value))
        for checkpoint, step, value in rows
    ]
