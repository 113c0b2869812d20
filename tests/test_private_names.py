"""No hant module (nor benchmark) reaches into another module's private (``_x``) names: what a
module shares, it makes public."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("hant", "benchmarks")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_hant(node: ast.ImportFrom) -> bool:
    return node.level > 0 or (node.module or "").split(".")[0] == "hant"


def private_uses(source: str) -> list[str]:
    """Each cross-module use of a private name of hant in ``source``: ``from .x import _y``,
    ``from . import _x`` and ``x._y`` where ``x`` is a hant module imported here."""
    tree = ast.parse(source)
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _is_hant(node):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}")
                modules.add(alias.asname or alias.name)  # may be a module (from . import stages)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "hant":
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checker_finds_each_form():
    source = "from .stages import _table, public\nfrom . import cli\nimport hant.io as hio\ncli._run()\nhio._w\n"
    assert len(private_uses(source)) == 3
    assert private_uses("from torch import _C\nimport torch\ntorch._dynamo\nclass A:\n    def f(self):\n"
                        "        return self._x\n") == []


def test_no_module_imports_another_modules_private_names():
    offenders = {
        str(path.relative_to(ROOT)): uses
        for folder in CHECKED
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (uses := private_uses(path.read_text()))
    }
    assert not offenders, offenders
