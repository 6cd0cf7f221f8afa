"""The rooms of ``digest/`` and who may import whom (see README, "How it works").

Read from the source with ``ast`` (imports inside functions count too), so the
picture in the README cannot drift from the code: a library room never imports a
shell, ``compose`` and ``transport`` never touch the store, and nothing imports in
a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digest"

LIBRARY = ("core", "store", "ingest", "edition", "compose", "transport", "outbox", "app")
SHELLS = ("cli", "service", "web")
# Each room may import itself and the rooms listed (and the package face, ``digest``).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "store": {"core"},
    "ingest": {"core", "store"},
    "edition": {"core", "store"},
    "compose": {"core", "edition"},
    "transport": {"core"},
    "outbox": {"core", "store", "edition", "compose", "transport"},
    "app": {"core", "store", "ingest", "edition", "compose", "transport", "outbox"},
    "service": set(LIBRARY),
    "web": set(LIBRARY),
    "cli": set(LIBRARY) | {"service", "web"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.relative_to(PACKAGE).parts
    }


def imports_of(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """Every ``digest`` module the file imports (``from digest.x import y`` is ``digest.x.y`` if that is a module)."""
    known = modules()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "digest":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "digest":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if full in known else base


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_every_module_lives_in_a_room() -> None:
    loose = [m for m in modules() if m != "digest" and room(m) is None]
    assert loose == [], f"modules outside the rooms {sorted(ALLOWED)}: {loose}"


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_room_imports_only_rooms_it_may(name: str) -> None:
    bad = []
    for module, path in modules().items():
        if room(module) != name:
            continue
        for line, target in imports_of(path, module):
            other = room(target)
            if other is not None and other != name and other not in ALLOWED[name]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert bad == [], f"{name}/ may import only {sorted(ALLOWED[name]) or 'nothing of digest'}:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = {m: {t for _, t in imports_of(p, m) if t in modules() and t != m} for m, p in modules().items()}
    # A package's face importing its own modules is how packages work, not a cycle.
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
