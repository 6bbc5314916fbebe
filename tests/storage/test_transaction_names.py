"""Every operation on a zone's pool carries a static name from one closed set (issue 12)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gateway.storage import TRANSACTION_NAMES

STORAGE = Path(__file__).resolve().parents[2] / "gateway" / "storage"
ENTRY_POINTS = {"acquire", "stream", "fetch", "fetchrow", "fetchval", "execute", "operation"}


def pool_calls() -> list[tuple[str, int, ast.expr | None]]:
    """(file, line, first argument) of every `<…>._pool.<entry point>(…)` or `pool.<…>(…)` call
    in gateway/storage: the ZonePool entry points (a connection's own methods are not)."""
    calls = []
    for path in sorted(STORAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ENTRY_POINTS
            ):
                continue
            receiver = node.func.value
            if (isinstance(receiver, ast.Attribute) and receiver.attr == "_pool") or (
                isinstance(receiver, ast.Name) and receiver.id == "pool"
            ):
                if path.name == "pool.py":  # the pool's own delegation to asyncpg
                    continue
                calls.append((path.name, node.lineno, node.args[0] if node.args else None))
    return calls


def test_every_name_is_a_lowercase_noun_dot_verb_listed_once() -> None:
    assert len(TRANSACTION_NAMES) == len(set(TRANSACTION_NAMES))
    for name in TRANSACTION_NAMES:
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+", name), name


def test_every_pool_call_names_its_operation_with_a_literal_of_the_set_used_once() -> None:
    calls = pool_calls()
    assert len(calls) >= len(TRANSACTION_NAMES)  # the scan does see the stores' calls
    used: list[str] = []
    for file, line, first in calls:
        assert isinstance(first, ast.Constant), (file, line)
        assert isinstance(first.value, str), (file, line)
        assert first.value in TRANSACTION_NAMES, (file, line, first.value)
        used.append(first.value)
    # One name, one call site (a slow name points at one place); no listed name goes unused.
    assert sorted(used) == sorted(TRANSACTION_NAMES)


def test_a_name_is_its_store_module() -> None:
    modules = {path.stem for path in STORAGE.glob("*.py")}
    for name in TRANSACTION_NAMES:
        assert name.split(".")[0] in modules, name
