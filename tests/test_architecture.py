"""The import graph of src/ and cli/ (function-level imports included): no cycle, no upward edge.

The layers are the ones ``docs/architecture.md`` documents, lowest first; a module may import
modules of its own layer or of lower layers only.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"piumr": REPO / "src" / "piumr", "piumr_cli": REPO / "cli"}

# (module or package prefix, layer); the longest matching prefix wins
LAYERS: list[tuple[str, int]] = [
    ("piumr.errors", 0), ("piumr.settings", 0), ("piumr.version", 0), ("piumr.files", 0),
    ("piumr.config", 1), ("piumr.backbones", 1), ("piumr.source", 1),
    ("piumr.runtime", 2),
    ("piumr.data", 3),
    ("piumr.model", 4), ("piumr.criterion", 4), ("piumr.dg", 4), ("piumr.losses", 4), ("piumr.kernels", 4), ("piumr.metrics", 4), ("piumr.speed", 4), ("piumr.steplog", 6),
    ("piumr.recipe", 5), ("piumr.stall", 5), ("piumr.checkpoint", 5), ("piumr.run_folder", 5),
    ("piumr.evaluate", 6), ("piumr.plots", 6),
    ("piumr.train", 7), ("piumr.predict", 7), ("piumr.bench", 7),
    ("piumr.reproduce", 8), ("piumr.shift", 8),
    ("piumr", 9),  # the package facade (piumr/__init__.py: TFAM, GIRLLoss, build_model)
    ("piumr_cli", 10),
    ("piumr.__main__", 11),  # ``python -m piumr``: the entry point, runs the CLI
]


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, root in ROOTS.items():
        for f in root.rglob("*.py"):
            parts = [pkg, *f.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports anywhere in its file (module, function and TYPE_CHECKING level)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # ``import piumr.data.video`` -> the module itself
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _layer(mod: str) -> int:
    best = max((p for p, _ in LAYERS if mod == p or mod.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{mod} has no layer: add it to docs/architecture.md and LAYERS")
    return dict(LAYERS)[best]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def test_every_module_has_a_layer() -> None:
    for m in _modules():
        _layer(m)


def test_no_upward_imports() -> None:
    bad = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
           for m, targets in sorted(_graph().items()) for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_graph_sees_function_level_imports(tmp_path: Path) -> None:
    """The checker itself: a function-level upward import and a cycle are found."""
    f = tmp_path / "mod.py"
    f.write_text("def f() -> None:\n    from piumr.train import train\n")
    known = {"piumr.config", "piumr.train"}
    assert _imports("piumr.config", f, known) == {"piumr.train"}
    assert _layer("piumr.train") > _layer("piumr.config")


def test_architecture_doc_names_every_module() -> None:
    """Every file of src/piumr (``data/loaders.py``), every sub-package (``data/synth/``) and every CLI file
    (``cli/main.py``) is named in docs/architecture.md."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    names = []
    for pkg, root in ROOTS.items():
        for f in root.rglob("*.py"):
            rel = f.relative_to(root)
            if f.name == "__init__.py":
                if rel.parent == Path("."):
                    continue
                name = f"{rel.parent.as_posix()}/"
            else:
                name = rel.as_posix() if rel.parent.name != "synth" else f"{rel.parent.as_posix()}/"
            names.append(f"cli/{name}" if pkg == "piumr_cli" else name)
    missing = sorted({n for n in names if n not in doc})
    assert not missing, f"docs/architecture.md does not mention: {missing}"


def test_every_package_is_installed() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in _modules().items() if p.name == "__init__.py"}
    assert packages <= listed, f"packages missing from pyproject.toml: {sorted(packages - listed)}"


def test_no_oversized_module() -> None:
    """Modules stay small: at most 500 lines, every one."""
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    big = {m: n for m, n in sizes.items() if n > 500}
    assert not big, f"modules over the limit: {big}"
