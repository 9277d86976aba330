"""The architecture's rules, checked on the source: no capability probing, a curated public API
that equals the documented one, imports only downwards, docstrings that stand alone."""

import ast
import importlib
import pathlib
import re
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "sdekit"
DOCS = ROOT / "docs"

#: Public packages and modules, each with an ``__all__``.
PUBLIC = ["sdekit", "sdekit.processes", "sdekit.parameterisation", "sdekit.wrappers",
          "sdekit.objectives", "sdekit.sampling", "sdekit.nets", "sdekit.nets.equivariant",
          "sdekit.train", "sdekit.data", "sdekit.metrics", "sdekit.io", "sdekit.perf"]

#: Import layers, lowest first: a module may import its own package and lower layers only.
LAYERS = {
    "_validate": 0, "_custom_types": 0, "_model": 0, "io": 0, "perf": 0,
    "nets": 1, "processes": 1,
    "parameterisation": 2,
    "wrappers": 3,
    "objectives": 4,
    "sampling": 5,
    "metrics": 6,
    "data": 6,
    "train": 7,
    "__init__": 9,
}


def _sources():
    return sorted(SRC.rglob("*.py"))


def test_no_capability_probing():
    """Capabilities are declared on abstract classes, never discovered with hasattr/getattr."""
    bad = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == [], bad


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: pathlib.Path) -> set[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    mod = ".".join(rel.parts)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        pkg = mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("sdekit"):
                out.add(target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("sdekit"))
    return out


def test_imports_go_downwards_only():
    bad = []
    for path in _sources():
        here = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        src_pkg = _package_of(here.replace(".__init__", "") if here != "sdekit.__init__"
                              else "sdekit")
        for target in _imports(path):
            dst_pkg = _package_of(target)
            if dst_pkg == src_pkg or dst_pkg == "__init__" and target == "sdekit":
                continue
            if LAYERS.get(dst_pkg, 99) > LAYERS.get(src_pkg, 99):
                bad.append(f"{here} -> {target}")
    assert bad == [], bad


def _documented() -> dict[str, set[str]]:
    """``::: sdekit.x.Name`` entries of the API pages, by owning public module."""
    out: dict[str, set[str]] = {m: set() for m in PUBLIC}
    for page in list((DOCS / "api").glob("*.md")) + [DOCS / "performance.md"]:
        for ref in re.findall(r"^::: (sdekit[\w.]*)$", page.read_text(), flags=re.M):
            owner = max((m for m in PUBLIC if ref.startswith(m + ".")), key=len, default=None)
            if owner is not None and ref[len(owner) + 1:].count(".") == 0:
                out[owner].add(ref[len(owner) + 1:])
    return out


@pytest.mark.parametrize("name", PUBLIC)
def test_public_api_is_curated_and_documented(name):
    mod = importlib.import_module(name)
    assert isinstance(mod.__all__, list | tuple), name
    public = set(mod.__all__)
    assert len(public) == len(mod.__all__), f"{name}.__all__ has duplicates"
    for entry in public:
        assert not entry.startswith("_"), f"{name}.__all__ lists the private {entry}"
        assert hasattr(mod, entry), f"{name}.__all__ lists {entry}, which does not exist"
    exported = {n for n in public if not isinstance(getattr(mod, n), types.ModuleType)}
    if name == "sdekit":  # the top level re-exports names documented in their own packages
        return
    assert exported == _documented()[name], (
        f"{name}: in __all__ but not on an API page: {sorted(exported - _documented()[name])}; "
        f"on a page but not in __all__: {sorted(_documented()[name] - exported)}")


def test_docstrings_stand_alone():
    """No docstring or comment sends the reader to files outside the repository (the specs)."""
    pattern = re.compile(r"spec/|\bspec\b.*§|\b(psld|reflected|vdpm|sit_combostoc|"
                         r"structure_preserving|equivariant_layers)\.md")
    bad = [f"{p.relative_to(ROOT)}:{i + 1}" for p in _sources()
           for i, line in enumerate(p.read_text().splitlines()) if pattern.search(line)]
    assert bad == [], bad
