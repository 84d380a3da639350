"""Layering: every layer imports only those below it (DESIGN.md).

From the bottom: the core (``metarobot``'s top-level modules and ``metarobot.sampling``); task
families (``envs``) and agents (``agents``), each on the core alone; the run layer
(``metarobot.run``), where families meet agents; rendering, reports and the CLI on top.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ABOVE_RUN = ("metarobot.rendering", "metarobot.report", "metarobot.cli")
ABOVE_CORE = ("envs", "agents", "metarobot.run", *ABOVE_RUN)

FORBIDDEN = {
    "core": ABOVE_CORE,
    "envs": ("agents", "metarobot.run", *ABOVE_RUN),
    "agents": ("envs", "metarobot.run", *ABOVE_RUN),
    "run": ABOVE_RUN,
    "rendering": ("metarobot.report", "metarobot.cli"),
    "report": ("metarobot.rendering", "metarobot.cli"),
    "cli": (),
}


def layer_files(layer: str) -> list[Path]:
    package = ROOT / "metarobot"
    if layer == "core":
        above = {"run", "rendering", "cli", "report.py"}
        return sorted(
            path
            for path in package.rglob("*.py")
            if path.relative_to(package).parts[0] not in above
        )
    if layer in ("envs", "agents"):
        return sorted((ROOT / layer).rglob("*.py"))
    if layer == "report":
        return [package / "report.py"]
    return sorted((package / layer).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add("relative import")
    return names


def test_the_layers_cover_every_module():
    covered = {path for layer in FORBIDDEN for path in layer_files(layer)}
    everything = {
        path
        for package in ("metarobot", "envs", "agents")
        for path in (ROOT / package).rglob("*.py")
    }
    assert covered == everything, sorted(str(p.relative_to(ROOT)) for p in everything - covered)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_layers_below(layer):
    files = layer_files(layer)
    assert files
    violations = []
    for path in files:
        for module in imported_modules(path):
            if module == "relative import":
                violations.append(f"{path.relative_to(ROOT)} uses a relative import")
            for banned in FORBIDDEN[layer]:
                if module == banned or module.startswith(banned + "."):
                    violations.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not violations, violations


@pytest.mark.parametrize(
    ("layer", "module"),
    [
        ("core", "envs"),
        ("core", "agents.maml"),
        ("core", "metarobot.run.training"),
        ("core", "metarobot.cli"),
        ("envs", "metarobot.run"),
        ("agents", "envs.registry"),
        ("run", "metarobot.rendering.scene"),
    ],
)
def test_the_check_catches_an_upward_import(layer, module):
    assert any(module == b or module.startswith(b + ".") for b in FORBIDDEN[layer])


def test_core_init_imports_nothing_heavy():
    modules = imported_modules(ROOT / "metarobot" / "__init__.py")
    assert not {m for m in modules if m.split(".")[0] in {"torch", "mujoco", "gymnasium", "envs"}}
