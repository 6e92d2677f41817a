"""The package's structure, measured from the code: layers, no cycles, short functions, a small top level.

Every import is counted, also those inside functions. A unit is a subpackage
of ``stylegan_unmask`` or one of its top-level modules; ``__init__`` is the
package root (it defines ``DEFAULT_NETWORK`` and turns on the runtime's memory
settings). A unit may import only units of lower layers; units of one layer
do not import each other. The checker itself is tested on a small fake package.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from conftest import REPO_ROOT

#: The layers, lowest first; docs/architecture.md draws them.
LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("errors", "atomic"),                # exceptions with readable messages, atomic writes
    ("images",),                         # image I/O
    ("runtime",),                        # device, CPU probes, torch.compile, huge pages, heap reuse
    ("__init__",),                       # the package root: DEFAULT_NETWORK, memory settings at import
    ("networks",),                       # the StyleGAN2 generator, rendering seeds and latents
    ("checkpoints",),                    # network files -> generator, the restricted unpickler
    ("perceptual",),                     # VGG16 features, LPIPS
    ("face",),                           # photo -> aligned face + mask; blend and paste back
    ("projector",),                      # masked W+ projection
    ("pipeline",),                       # one photo through the chain
    ("runs",),                           # folders of photos: batch, the run bookkeeping
    ("evaluation", "training"),          # quality against ground truth; our own network
    ("cli",),                            # the command line
    ("__main__",),                       # python -m stylegan_unmask
)
TOP_LEVEL_MODULES = {"__init__", "__main__", "errors", "atomic", "images"}
MAX_FUNCTION_LINES = 100
PACKAGE = "stylegan_unmask"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(root: Path, path: Path) -> Set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved; names inside functions too)."""
    name = _module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # `from . import detect` names a module
    return found


def _unit(module: str) -> Optional[str]:
    """The unit a ``stylegan_unmask.*`` name belongs to (None outside the package)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return "__init__" if len(parts) == 1 else parts[1]


def unit_graph(root: Path) -> Dict[str, Set[str]]:
    """unit -> the other units it imports, for the package below ``root``."""
    pkg = root / PACKAGE
    units = {p.name for p in pkg.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in pkg.glob("*.py")}
    graph: Dict[str, Set[str]] = {u: set() for u in units}
    for path in pkg.rglob("*.py"):
        rel = path.relative_to(pkg).parts
        me = rel[0] if len(rel) > 1 else path.stem
        for module in _imports(root, path):
            other = _unit(module)
            if other is not None and other in units and other != me:
                graph[me].add(other)
    return graph


def layer_violations(graph: Dict[str, Set[str]], layers: Sequence[Sequence[str]]) -> List[str]:
    level = {u: i for i, group in enumerate(layers) for u in group}
    problems = [f"{u}: not in a declared layer" for u in sorted(graph) if u not in level]
    for u, targets in sorted(graph.items()):
        for v in sorted(targets):
            if u in level and v in level and level[v] >= level[u]:
                kind = "a unit of its own layer" if level[v] == level[u] else "a higher layer"
                problems.append(f"{u} imports {v}, {kind}")
    return problems


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every import cycle between units (depth-first search, each reported once by its sorted members)."""
    found, seen = [], set()

    def visit(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                key = tuple(sorted(cycle))
                if key not in seen:
                    seen.add(key)
                    found.append(cycle + [nxt])
            elif len(path) < len(graph):
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def long_functions(folder: Path, limit: int) -> List[str]:
    out = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(folder.parent)}:{node.lineno} {node.name}: {n} lines")
    return out


# ----------------------------------------------------------------------------- the package


def test_every_import_goes_down_the_layers():
    assert layer_violations(unit_graph(REPO_ROOT), LAYERS) == []


def test_no_import_cycle_between_units():
    assert cycles(unit_graph(REPO_ROOT)) == []


def test_the_ops_import_nothing_from_the_package():
    for path in (REPO_ROOT / "torch_utils").rglob("*.py"):
        assert not any(m.split(".")[0] == PACKAGE for m in _imports(REPO_ROOT, path)), path


def test_no_function_over_100_lines():
    assert long_functions(REPO_ROOT / PACKAGE, MAX_FUNCTION_LINES) == []
    assert long_functions(REPO_ROOT / "torch_utils", MAX_FUNCTION_LINES) == []


def test_a_small_top_level():
    assert {p.stem for p in (REPO_ROOT / PACKAGE).glob("*.py")} == TOP_LEVEL_MODULES


# ----------------------------------------------------------------------------- the checker itself


def _fake_package(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in {"__init__.py": "", "low/__init__.py": "", "high/__init__.py": "", **files}.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_checker_catches_violations(tmp_path):
    layers = (("low",), ("__init__",), ("high",))
    clean = _fake_package(tmp_path / "clean", {"high/a.py": "from ..low import b\nfrom .. import X\n"})
    assert layer_violations(unit_graph(clean), layers) == [] and cycles(unit_graph(clean)) == []

    upward = _fake_package(tmp_path / "up", {"low/b.py": "def f():\n    from ..high import a  # lazy, still counted\n",
                                              "high/a.py": "from ..low import b\n"})
    graph = unit_graph(upward)
    assert layer_violations(graph, layers) == ["low imports high, a higher layer"]
    assert cycles(graph) == [["high", "low", "high"]]

    sideways = _fake_package(tmp_path / "side", {"new/__init__.py": "from stylegan_unmask.low import b\n"})
    assert layer_violations(unit_graph(sideways), layers) == ["new: not in a declared layer"]

    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    long = _fake_package(tmp_path / "long", {"low/c.py": f"def too_long():\n{body}\n"})
    assert [p.split(" ", 1)[1] for p in long_functions(long / PACKAGE, MAX_FUNCTION_LINES)] == \
        [f"too_long: {MAX_FUNCTION_LINES + 1} lines"]
