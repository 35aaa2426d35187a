"""The house's layers (docs/architecture.md): every import points down, never up.

    common -> topology -> gateway -> controller -> probes -> emulation -> experiments

A package may import itself and the packages to its left; ``common`` imports only the
standard library and ``topology`` only the standard library, its declared dependencies and
``common``. Every import counts, also one inside a function. The few programs that sit
above their package's layer are listed in PROGRAM_EDGES with the reason.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["common", "topology", "gateway", "controller", "probes", "emulation", "experiments"]
THIRD_PARTY = {"common": set(), "topology": {"networkx", "yaml"}}
# module -> project packages it may import beyond its layer, and why
PROGRAM_EDGES = {
    "probes.cli": ({"emulation"}, "`python -m probes` builds an emulation to measure it"),
}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute top-level name) of every import in the file."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def violations() -> list[str]:
    bad = []
    for module, path in modules().items():
        pkg = module.split(".")[0]
        rank = LAYERS.index(pkg)
        extra, _why = PROGRAM_EDGES.get(module, (set(), ""))
        for line, name in imports_of(module, path):
            top = name.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if top in LAYERS:
                if LAYERS.index(top) > rank and top not in extra:
                    bad.append(f"{where}: {top} is above {pkg}")
            elif pkg in THIRD_PARTY and top not in STDLIB and top not in THIRD_PARTY[pkg]:
                bad.append(f"{where}: {pkg} may use only the standard library"
                           + (f" and {sorted(THIRD_PARTY[pkg])}" if THIRD_PARTY[pkg] else ""))
    return bad


def test_every_import_points_down():
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: an upward import in a scratch copy is reported."""
    fake = tmp_path / "topology"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("def f():\n    from emulation.network import Emulation\n"
                                 "    import matplotlib\n")
    for pkg in LAYERS:
        if pkg != "topology":
            (tmp_path / pkg).mkdir()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = violations()
    assert any("topology/bad.py:2 imports emulation.network" in v for v in found), found
    assert any("topology/bad.py:3 imports matplotlib" in v for v in found), found


def test_relative_imports_resolve_to_their_package():
    assert imports_of("controller.app", ROOT / "controller" / "app.py")
    names = {n for _, n in imports_of("controller.app", ROOT / "controller" / "app.py")}
    assert "controller.core" in names and "controller" in names  # from . import ofmsg
