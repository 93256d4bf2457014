"""The package's rooms and what each may import (README, "Architecture"): the import drawing read from the source
(every ``import``, at module level or inside a function), with no arrow from the library into ``bin/``, no arrow
a room is not allowed, and no circle; no file of the library over 500 lines, no entry point over 200."""

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_gated"
#: the rooms (sub-packages) and the rooms each may import; "base" is the top-level modules
ALLOWED = {
    "base": set(),
    "data": {"base"},
    "method": {"base", "data"},
    "plugin": {"base", "data", "method"},
    "sharing": {"base", "data", "method", "plugin"},
    "decoding": {"base", "data", "method", "plugin", "sharing"},
    "recipe": {"base", "data", "method", "plugin", "sharing", "decoding"},
    "importers": {"base", "data"},
    "corpus": {"base", "data", "recipe"},
    "bench": {"base", "data", "method", "plugin", "sharing", "decoding", "recipe"},
    "bin": {"base", "data", "method", "plugin", "sharing", "decoding", "recipe", "importers", "corpus", "bench"},
}
#: (module, imported module): an arrow outside the table, and why
EXCEPTIONS = {
    # set-up runs envcheck in a bare venv (standard library only at import); after the install it checks, by
    # importing it, that the plugin registered its classes in ESPnet
    ("envcheck", "plugin.registry"): "envcheck checks the registration it exists to check",
}
MAX_LINES = 500
MAX_ENTRY_POINT_LINES = 200


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def room(module: str) -> str:
    first = module.split(".")[0]  # "" for the package itself (its __version__)
    return first if first and (PACKAGE / first).is_dir() else "base"


def imports() -> dict:
    """module -> the package's modules it imports (relative names, e.g. ``method.model``)."""
    graph = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        mine = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "espnet_gated":
                target = node.module.partition(".")[2]
                # from espnet_gated.recipe.results import fmt; from espnet_gated.recipe import launcher
                for alias in node.names:
                    submodule = f"{target}.{alias.name}" if target else alias.name
                    graph[mine].add(submodule if is_module(submodule) else target)
            elif isinstance(node, ast.Import):
                graph[mine].update(a.name.partition(".")[2] for a in node.names if a.name.startswith("espnet_gated."))
    return graph


def test_every_arrow_is_allowed_and_none_goes_into_bin():
    wrong = []
    for module, targets in imports().items():
        for target in targets:
            mine, theirs = room(module), room(target)
            if mine != theirs and theirs not in ALLOWED[mine] and (module, target) not in EXCEPTIONS:
                wrong.append(f"{module} ({mine}) -> {target} ({theirs})")
    assert wrong == []


def _cycle(graph: dict):
    """A cycle of ``graph`` as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_circle_between_modules_or_rooms():
    graph = imports()
    assert _cycle(graph) is None
    rooms = defaultdict(set)
    for module, targets in graph.items():
        rooms[room(module)].update(
            room(t) for t in targets if room(t) != room(module) and (module, t) not in EXCEPTIONS
        )
    assert _cycle(rooms) is None


def test_the_cycle_finder_finds_one():  # the two tests above would pass on anything if it never did
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_file_sizes(path):
    limit = MAX_ENTRY_POINT_LINES if path.parent.name == "bin" else MAX_LINES
    assert len(path.read_text(encoding="utf-8").splitlines()) <= limit


def test_every_module_imports():
    """An import of a name that moved fails here, not in the first user's run."""
    for path in sorted(PACKAGE.rglob("*.py")):
        importlib.import_module(".".join(["espnet_gated", *filter(None, module_name(path).split("."))]))
