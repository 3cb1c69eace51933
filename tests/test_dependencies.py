"""pyproject.toml is the one dependency list and it says what is true: every third-party module
autoclip imports is declared (core or an extra), and every declared core dependency does work
(it is imported, or it is an OpenTimelineIO adapter plugin that timeline.py asks for by name)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: extras whose packages may be missing from this environment (imported only when configured)
OPTIONAL_EXTRAS = {"ray"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]


def _canon(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_canon(_name(r)) for r in project["dependencies"]}
    extras = {k: {_canon(_name(r)) for r in v} for k, v in project.get("optional-dependencies", {}).items()}
    return core, extras


def _imported_top_levels() -> dict[str, str]:
    """Third-party top-level modules imported anywhere in autoclip/ (also inside functions)."""
    found: dict[str, str] = {}
    for path in (ROOT / "autoclip").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top != "autoclip" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_there_is_one_dependency_list() -> None:
    assert not list(ROOT.glob("requirements*.txt")), "pyproject.toml is the only dependency list"
    core, _ = _declared()
    assert {"torch", "torchvision"} <= core
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"torch==2.14.1"' in text and '"torchvision==0.29.1"' in text  # exact pins
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "pyproject.toml" in setup and "requirements" not in setup


def test_every_import_is_declared_and_every_dependency_is_used() -> None:
    core, extras = _declared()
    declared = core | set().union(*extras.values())
    dists_of = md.packages_distributions()
    optional = set().union(*(extras[k] for k in OPTIONAL_EXTRAS if k in extras))
    imported_dists: set[str] = set()
    for top, where in sorted(_imported_top_levels().items()):
        dists = {_canon(d) for d in dists_of.get(top, [])}
        if not dists:  # only an optional extra may be missing here
            assert top in {d.split("[")[0].replace("-", "_") for d in optional}, \
                f"{where} imports {top}, which no installed distribution provides"
            continue
        assert dists & declared, f"{where} imports {top} ({', '.join(sorted(dists))}): declare it in pyproject.toml"
        imported_dists |= dists & declared
    # OpenTimelineIO's format adapters are plugins it finds by entry point: they do work when
    # timeline.EXPORTS asks OTIO for adapters that only a plugin provides
    import opentimelineio as otio

    from autoclip.timeline import EXPORTS

    plugins = {d for d in core - imported_dists
               if any(ep.group == "opentimelineio.plugins" for ep in md.distribution(d).entry_points)}
    available = set(otio.adapters.available_adapter_names())
    wanted = {adapter for adapter, _ in EXPORTS.values()}
    assert wanted <= available, f"timeline.EXPORTS names adapters no installed plugin provides: {wanted - available}"
    assert wanted - {"otio_json"}, "no plugin adapter in use: drop the otio-*-adapter dependencies"
    unused = core - imported_dists - plugins
    assert not unused, f"declared but never imported by autoclip: {sorted(unused)} (remove them or use them)"
