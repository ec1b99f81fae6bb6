"""The import rules of docs/ARCHITECTURE.md, checked on the code: what each part of adaptive may import.

A part is a top-level module (`adaptive/events.py`) or package (`adaptive/scoring/`); its modules may
import each other freely. Every import counts, at the top of a module or inside a function, except
those under `if TYPE_CHECKING:` (annotations only: nothing runs them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ADAPTIVE = Path(__file__).resolve().parent.parent / "adaptive"

# The parts in the pipeline's order and, for each, the parts it may import (`adaptive` itself, for
# its version, is open to all). The table of docs/ARCHITECTURE.md says the same in words.
SHARED = {"addresses", "durations", "events", "vocabulary"}
RULES: dict[str, set[str]] = {
    "addresses": set(),
    "durations": set(),
    "vocabulary": set(),
    "events": {"vocabulary"},
    "wire": set(),
    "notify": set(),
    "config": SHARED,
    "sources": set(),
    "filters": SHARED,
    "scoring": SHARED | {"config"},
    "state": {"sources"},
    "decisions": SHARED | {"config", "scoring", "state"},
    "nftables": SHARED | {"config"},
    "metrics": SHARED | {"config"},
    "pipeline": SHARED | {"config", "filters", "scoring", "decisions", "state"},
    "daemon": SHARED | {"config", "wire", "notify", "sources", "filters", "scoring", "decisions", "state", "nftables",
                        "metrics", "pipeline"},
    "migrate": SHARED | {"config"},
    "control": SHARED | {"config", "wire", "notify", "sources", "filters", "scoring", "decisions", "state",
                         "nftables", "metrics", "pipeline", "migrate"},
    "__main__": {"control"},
}
# Modules allowed more than their part: `adaptive run` is the one command that starts the daemon.
EXCEPTIONS: dict[str, set[str]] = {"control.run": {"daemon"}}

# Libraries that one part alone may import: the rest of the code reaches them through it.
OWNED = {"nftables": "nftables", "prometheus_client": "metrics", "watchdog": "sources", "regex": "filters",
         "systemd": "sources", "redis": "fleet"}


def _module(path: Path) -> str:
    parts = path.relative_to(ADAPTIVE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> list[str]:
    """Every module a file imports, but under `if TYPE_CHECKING:`."""
    found: list[str] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                    (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.extend(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                raise AssertionError("a relative import: adaptive imports by absolute names only")
            if node.module == "adaptive":     # `from adaptive import __version__`, or a part by name
                found.extend(f"adaptive.{alias.name}" for alias in node.names if alias.name != "__version__")
                found.append("adaptive")
            elif node.module:
                found.append(node.module)

    Visitor().visit(tree)
    return found


def _graph() -> dict[str, list[str]]:
    return {_module(path): _imports(ast.parse(path.read_text(), str(path))) for path in sorted(ADAPTIVE.rglob("*.py"))}


GRAPH = _graph()


def _part(module: str) -> str:
    return module.split(".")[0]


def test_every_part_has_a_rule():
    parts = {_part(m) for m in GRAPH if m}
    assert parts - set(RULES) == set(), "a new part: say in RULES (and docs/ARCHITECTURE.md) what it may import"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m))
def test_a_module_imports_only_what_its_part_may(module):
    part = _part(module)
    allowed = RULES[part] | EXCEPTIONS.get(module, set()) | {part}
    wrong = []
    for name in GRAPH[module]:
        top = name.split(".")[0]
        if top == "adaptive":
            if name == "adaptive":
                continue
            target = name.split(".")[1]
            if target not in allowed:
                wrong.append(name)
        elif top in OWNED and OWNED[top] != part:
            wrong.append(f"{name} (only adaptive.{OWNED[top]} imports {top})")
    assert wrong == [], f"adaptive.{module} imports what {part} may not: {', '.join(wrong)}"


def test_the_rules_have_no_cycle():
    """Each part may import only parts before it; so no chain of imports ever comes back."""
    done: set[str] = set()

    def visit(part: str, path: tuple[str, ...]) -> None:
        if part in path:
            raise AssertionError(f"a cycle in RULES: {' → '.join((*path, part))}")
        if part in done:
            return
        for other in RULES.get(part, set()):
            visit(other, (*path, part))
        done.add(part)

    for part in RULES:
        visit(part, ())
    for module, extra in EXCEPTIONS.items():
        for other in extra:
            assert _part(module) not in _reachable(other), f"{module} → {other} closes a cycle"


def _reachable(part: str) -> set[str]:
    seen, todo = set(), [part]
    while todo:
        for other in RULES.get(todo.pop(), set()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_the_test_sees_imports_in_functions_and_not_under_type_checking():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from adaptive.daemon import Daemon\n"
                     "def f():\n    from adaptive.state import State\n    import regex\n")
    assert _imports(tree) == ["typing", "adaptive.state", "regex"]
