"""The tree drawn in gateway/errors.py is the error tree: every `GatewayError` subclass in the
gateway is drawn, every drawn name is such a class, with the parent, module, status and code
the drawing gives it."""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

import pytest

import gateway
from gateway import errors
from gateway.errors import GatewayError

_LINE = re.compile(
    r"^    (?P<indent>(?:│   |    )*)(?P<branch>├── |└── )?"
    r"(?P<name>[A-Z]\w*) +(?P<status>\d{3})  (?P<code>[\w-]+)(?P<rest>.*)$"
)
_MODULE = re.compile(r"\[(?P<module>[a-z_]+(?:\.[a-z_]+)*)\]")


@dataclass(frozen=True)
class Drawn:
    parent: str | None
    module: str
    status: int
    code: str


def drawn_tree(docstring: str) -> dict[str, Drawn]:
    tree: dict[str, Drawn] = {}
    path: list[str] = []  # the names from the root down to the line before
    for line in docstring.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"]) // 4 + (1 if match["branch"] else 0)
        assert depth <= len(path), f"{match['name']} is drawn below no parent"
        del path[depth:]
        module = _MODULE.search(match["rest"])
        assert match["name"] not in tree, f"{match['name']} is drawn twice"
        tree[match["name"]] = Drawn(
            parent=path[-1] if path else None,
            module="gateway." + module["module"] if module else "gateway.errors",
            status=int(match["status"]),
            code=match["code"],
        )
        path.append(match["name"])
    return tree


def defined_tree() -> dict[str, type[GatewayError]]:
    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if module.name != "gateway.__main__":  # runs the CLI when imported
            importlib.import_module(module.name)
    found: dict[str, type[GatewayError]] = {"GatewayError": GatewayError}
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        for sub in pending.pop().__subclasses__():
            # Only the gateway's own classes: a test may subclass an error for its own use.
            if sub.__module__.startswith("gateway.") and sub.__name__ not in found:
                found[sub.__name__] = sub
                pending.append(sub)
    return found


DRAWN = drawn_tree(errors.__doc__ or "")


def test_the_drawing_parses_into_a_tree_rooted_at_gateway_error() -> None:
    assert DRAWN["GatewayError"].parent is None
    assert len(DRAWN) > 20  # the regular expression did not silently skip the drawing


def test_every_gateway_error_subclass_is_drawn() -> None:
    missing = sorted(set(defined_tree()) - set(DRAWN))
    assert not missing, f"not drawn in gateway/errors.py: {missing}"


def test_every_drawn_name_is_a_gateway_error_subclass() -> None:
    unknown = sorted(set(DRAWN) - set(defined_tree()))
    assert not unknown, f"drawn in gateway/errors.py but not defined: {unknown}"


@pytest.mark.parametrize("name", sorted(DRAWN))
def test_each_class_has_the_parent_module_status_and_code_drawn(name: str) -> None:
    cls = defined_tree()[name]
    drawn = DRAWN[name]
    parents = [base.__name__ for base in cls.__bases__ if issubclass(base, GatewayError)]
    assert parents == ([drawn.parent] if drawn.parent else [])
    assert cls.__module__ == drawn.module
    assert (cls.status, cls.code) == (drawn.status, drawn.code)
