"""The import graph runs one way (docs/architecture.md draws it).

Every import of a basinflow module counts, wherever it stands: at module level, inside a
function (a lazy import is still an arrow), under ``TYPE_CHECKING``, and as a dotted path
in a string that names a basinflow module (``importlib.import_module``, lazy maps, plugin
paths, an entry-point group named like a package). Each top-level unit (a package such as
``basinflow.storage``, or a module such as ``basinflow.config``) may import only the units
listed for it in :data:`MAY_IMPORT`; inside the packages of :data:`FLOORS`, a module imports
only modules on lower floors. The picture in docs/architecture.md is held to the code (the
arrows between units, drawn iff they exist) and the doc names every module.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "basinflow"
DOC = ROOT.parent / "docs" / "architecture.md"

LEAVES = {"errors", "keys", "plugins"}
#: unit -> the units it may import (besides itself), from the ground floor up.
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "keys": {"errors"},
    "plugins": {"errors"},
    "storage": LEAVES,
    "spice": LEAVES | {"storage"},
    "recipes": LEAVES | {"spice"},  # pure: never storage, never the catalog
    "catalog": LEAVES | {"storage", "spice"},  # never recipes, never config
    "config": LEAVES | {"storage", "spice", "catalog"},
    "samples": LEAVES | {"storage", "spice", "recipes"},
    "xarray_backend": LEAVES | {"storage"},  # xarray's door to referrers
    "report": set(),  # how a result reads, for the terminal and the UI
    "tasks": LEAVES | {"storage", "spice", "recipes", "catalog", "config"},
    "flows": LEAVES | {"storage", "spice", "recipes", "catalog", "config", "tasks", "report"},
    "cli_checks": LEAVES | {"storage", "recipes", "catalog", "config"},
    "cli_spice": LEAVES | {"storage", "spice", "catalog", "config"},
    "cli_referrer": LEAVES | {"storage", "catalog", "config", "report"},
    "cli_flows": LEAVES | {"catalog", "config", "tasks", "flows", "report", "cli_checks"},
    "demo": LEAVES
    | {"catalog", "config", "samples", "tasks", "flows", "cli_flows", "report", "basinflow"},
    "cli": {"*"},  # the top floor
    "basinflow": {"*"},  # the package face: lazy names of every layer
}
#: Only the orchestration layer talks to Prefect.
PREFECT_UNITS = {"flows"}

#: Inside a package, module -> floor: a module imports only modules on lower floors of its
#: package (the package's ``__init__`` is its face and imports any of them). Split modules
#: keep the one-way order of the code they came from: json_values below document, the rule
#: (resolve) below what shows it (view), the rsm schema below its setup below its gridding.
#: ``storage`` is left to the unit table: its layouts and referrer are subpackages of their own.
FLOORS: dict[str, list[set[str]]] = {
    "spice": [
        {"json_values"},
        {"document"},
        {"types", "resolve", "store"},
        {"fsspec_store", "view", "stacks", "revisions"},
        {"importer", "proposal_spice"},
    ],
    "recipes": [
        {"base", "chunking", "geometry", "grid", "kernels", "masking"},
        {"registry", "quicklook", "rsm_spice"},
        {"normalize", "roi", "rsm_setup"},
        {"rsm_gridding"},
        {"rsm"},
    ],
    "tasks": [
        {"outputs", "results"},
        {"provenance", "request"},
        {"freshness"},
        {"cooking"},
        {"worker"},
    ],
    "catalog": [{"template", "summaries"}, {"listing"}, {"repository"}],
    "flows": [
        {"artifacts", "liveness", "parameters", "runtime"},
        {"binding", "cook_tasks"},
        {"cluster", "reporting"},
        {"cook"},
        {"watch"},
        {"run", "serve"},
    ],
}

_MODULE_TEXT = re.compile(r"^basinflow(\.[A-Za-z_]\w*)+(:[\w.]+)?$")


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "basinflow"


def _exists(module: str) -> bool:
    path = ROOT.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            out.add(id(first.value))
    return out


def imports_of(path: Path) -> list[tuple[str, int]]:
    """``(module, line)`` of every basinflow module that ``path`` names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    try:
        package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    except ValueError:  # a file outside the package (the probe below)
        package = "basinflow"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("basinflow")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] == "basinflow":
                out.append((module, node.lineno))
                # ``from basinflow import tasks`` names the submodule
                out += [
                    (f"{module}.{a.name}", node.lineno)
                    for a in node.names
                    if _exists(f"{module}.{a.name}")
                ]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip
            and _MODULE_TEXT.match(node.value)
            and _exists(node.value.partition(":")[0])
        ):
            out.append((node.value.partition(":")[0], node.lineno))
    return out


def _unit_of_file(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if len(rel.parts) == 1:
        return "basinflow" if rel.name == "__init__.py" else rel.stem
    return rel.parts[0]


def graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> ``file:line`` of each arrow."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(ROOT.rglob("*.py")):
        src = _unit_of_file(path)
        for module, line in imports_of(path):
            dst = _unit(module)
            if dst != src:
                out[src][dst].append(f"{path.relative_to(ROOT.parent)}:{line}")
    return out


def test_every_unit_has_a_place():
    units = {_unit_of_file(p) for p in ROOT.rglob("*.py")}
    assert units <= set(MAY_IMPORT), f"place {sorted(units - set(MAY_IMPORT))} in MAY_IMPORT"


def test_imports_run_one_way():
    wrong = [
        f"{src} -> {dst} ({', '.join(where)})"
        for src, targets in graph().items()
        if "*" not in MAY_IMPORT[src]
        for dst, where in sorted(targets.items())
        if dst not in MAY_IMPORT[src]
    ]
    assert not wrong, "imports that run back up:\n" + "\n".join(wrong)


def test_no_circles_between_units():
    # the package face hands names on lazily; arrows into it are not arrows between layers
    g = {src: set(targets) - {"basinflow"} for src, targets in graph().items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in g.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = sorted(u for u in g if u != "basinflow" and u in reach(u))
    assert not circles, f"units that reach themselves: {circles}"


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_modules_inside_a_package_import_downwards(package):
    floor = {m: i for i, mods in enumerate(FLOORS[package]) for m in mods}
    files = sorted((ROOT / package).glob("*.py"))
    modules = {p.stem for p in files} - {"__init__"}
    assert modules == set(floor), f"place {sorted(modules - set(floor))} in FLOORS[{package!r}]" + (
        f"; {sorted(set(floor) - modules)} no longer exist" if set(floor) - modules else ""
    )
    prefix = f"basinflow.{package}."
    wrong = [
        f"{p.stem} -> {target} ({p.relative_to(ROOT.parent)}:{line})"
        for p in files
        if p.stem != "__init__"
        for module, line in imports_of(p)
        if module.startswith(prefix)
        for target in [module[len(prefix) :].split(".")[0]]
        if target != p.stem and floor[target] >= floor[p.stem]
    ]
    assert not wrong, f"imports that run sideways or up inside {package}:\n" + "\n".join(wrong)


def test_only_flows_import_prefect():
    found = []
    for path in ROOT.rglob("*.py"):
        if _unit_of_file(path) in PREFECT_UNITS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] in ("prefect", "prefect_dask") for n in names):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not found, f"Prefect outside basinflow/flows: {found}"


_ARROW = re.compile(r"^\s*(\w+)(?:\[.*?\])?\s*-->\s*(\w+)")


def drawn_arrows() -> set[tuple[str, str]]:
    """``(unit, unit)`` of every arrow of the mermaid picture in docs/architecture.md."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    return {m.groups() for line in block.splitlines() if (m := _ARROW.match(line))}


def test_the_picture_is_the_code():
    """Arrows between units (the ground floor and the package face aside) are drawn iff
    the code has them."""
    hidden = LEAVES | {"basinflow", "ground"}
    code = {
        (src, dst)
        for src, targets in graph().items()
        for dst in targets
        if src not in hidden and dst not in hidden
    }
    drawn = {(a, b) for a, b in drawn_arrows() if a not in hidden and b not in hidden}
    assert drawn == code, (
        f"drawn but not in the code: {sorted(drawn - code)}; "
        f"in the code but not drawn: {sorted(code - drawn)}"
    )


def test_the_doc_names_every_module():
    text = DOC.read_text(encoding="utf-8")
    missing = [
        rel
        for path in sorted(ROOT.rglob("*.py"))
        if f"`{(rel := path.relative_to(ROOT).as_posix())}`" not in text
    ]
    assert not missing, f"name these modules in {DOC.name}: {missing}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from basinflow.recipes.registry import get_recipe\n", ["basinflow.recipes.registry"]),
        ("def f():\n    import basinflow.config\n", ["basinflow.config"]),
        ("from basinflow import tasks\n", ["basinflow", "basinflow.tasks"]),
        ("GROUP = 'basinflow.recipes'\n", ["basinflow.recipes"]),
        ("X = {'a': 'basinflow.storage.fs:pin'}\n", ["basinflow.storage.fs"]),
        ("'''basinflow.recipes in a docstring is prose'''\nHOST = 'basinflow.host'\n", []),
    ],
)
def test_the_graph_sees_every_kind_of_arrow(tmp_path, source, expected):
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert [m for m, _ in imports_of(probe)] == expected
