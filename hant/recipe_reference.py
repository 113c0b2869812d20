"""The reference of every recipe field, generated from the recipe dataclasses and their docstrings:
``python -m hant.recipe_reference`` writes ``docs/recipe_reference.md`` (``--check`` says whether the
file there is current)."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
import typing
from functools import cache
from pathlib import Path
from typing import Any

from .config import Recipe, Range

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "recipe_reference.md"
COMMAND = "python -m hant.recipe_reference"


@cache
def _class_docs(cls: type) -> dict[str, str]:
    """Field name → the docstring written under it in ``cls``'s own source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for stmt, after in zip(body, body[1:]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def field_doc(cls: type, name: str) -> str:
    """The docstring of field ``name`` of ``cls``, from the nearest class of its MRO that documents it."""
    for klass in cls.__mro__:
        if dataclasses.is_dataclass(klass) and name in _class_docs(klass):
            return _class_docs(klass)[name]
    return ""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(dict.fromkeys(type(a).__name__ for a in typing.get_args(tp)))
    if tp is type(None):
        return "null"
    args = typing.get_args(tp)
    return " or ".join(_type_name(a) for a in args) if args else getattr(tp, "__name__", str(tp))


def _allowed(tp: Any, limits: Range | None) -> str:
    literals = [a for a in (tp, *typing.get_args(tp)) if typing.get_origin(a) is typing.Literal]
    parts = [", ".join(f"`{v}`" for v in typing.get_args(a)) for a in literals]
    if limits is not None:
        parts.append(limits.describe())
    return "; ".join(parts)


def _default(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("``", "`")


def _section(cls: type, key: str, doc: str, out: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    nested = []
    rows = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            nested.append((tp, f"{key}.{f.name}" if key else f.name, field_doc(cls, f.name)))
            continue
        rows.append(f"| `{f.name}` | {_type_name(tp)} | {_default(f)} | {_allowed(tp, f.metadata.get('range'))} "
                    f"| {_cell(field_doc(cls, f.name))} |")
    if rows:
        out += [f"## `{key}`" if key else "## top level", "", _cell(doc), "",
                "| key | type | default | allowed | meaning |", "|---|---|---|---|---|", *rows, ""]
    for tp, sub, sub_doc in nested:
        _section(tp, sub, sub_doc or (tp.__doc__ or "").strip().splitlines()[0], out)


def render() -> str:
    """The whole reference as Markdown."""
    out = [
        "# Recipe reference",
        "",
        f"Every key a recipe may set, with its default and what it allows. Generated from `hant/config.py` "
        f"by `{COMMAND}`; do not edit by hand. A value outside \"allowed\" is refused when the recipe loads "
        "(`--dry-run` included), naming the key.",
        "",
    ]
    _section(Recipe, "", "Everything one run needs.", out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=COMMAND, description="write the recipe reference")
    p.add_argument("--out", type=Path, default=DOC_PATH)
    p.add_argument("--check", action="store_true", help="exit 1 if the file is not current, writing nothing")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out} is {'current' if current else f'stale; run {COMMAND}'}")
        return 0 if current else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
