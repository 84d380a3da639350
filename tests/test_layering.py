"""Layering: envs never import agents or the CLI; agents never import envs (DESIGN.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "envs": ("agents", "metarobot.cli"),
    "agents": ("envs", "metarobot.cli"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_layering(package):
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported_modules(path):
            for banned in FORBIDDEN[package]:
                if module == banned or module.startswith(banned + "."):
                    violations.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not violations, violations


def test_core_init_imports_nothing_heavy():
    modules = imported_modules(ROOT / "metarobot" / "__init__.py")
    assert not {m for m in modules if m.split(".")[0] in {"torch", "mujoco", "gymnasium", "envs"}}
