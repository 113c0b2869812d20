"""The family registry: one decorator registers a candidate family, one factory builds by spec."""
from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..errors import ConfigError, ZooError
from ..slots import Slot
from ..user_code import import_source
from .spec import CandidateSpec

_FAMILIES: dict[str, "CandidateFamily"] = {}


class CandidateFamily(ABC):
    """A family of candidate operations.

    ``candidates`` lists the parameter sets valid for a slot under the recipe's options
    (teacher-derived families also receive the block as ``teacher_block=``);
    ``build`` turns one spec into a module with the slot's input and output shapes, the same
    module every time. Teacher-derived families also receive the teacher's block (its weights
    initialise theirs); ``trainable`` is False for families whose output needs no distillation;
    ``by_default`` is False for families a recipe must name (they are not in :func:`default_families`).
    """

    name: str = ""
    teacher_derived: bool = False
    trainable: bool = True
    by_default: bool = True

    @abstractmethod
    def candidates(self, slot: Slot, **options: Any) -> list[dict]:
        """Parameter sets of this family that fit ``slot``."""

    def applies_to(self, teacher_block: nn.Module) -> bool:
        """Whether this family can replace this particular teacher block (default: yes)."""
        return True

    @abstractmethod
    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        """The module for ``spec``; teacher-derived families need ``teacher_block``."""


def register_family(name: str) -> Callable[[type[CandidateFamily]], type[CandidateFamily]]:
    """Class decorator: register a ``CandidateFamily`` under ``name`` for recipes to use."""

    def decorator(cls: type[CandidateFamily]) -> type[CandidateFamily]:
        if not (isinstance(cls, type) and issubclass(cls, CandidateFamily)):
            raise TypeError(f"@register_family({name!r}) must decorate a CandidateFamily subclass")
        if name in _FAMILIES and type(_FAMILIES[name]) is not cls:
            raise ZooError(f"a candidate family named {name!r} is already registered; pick another name")
        cls.name = name
        _FAMILIES[name] = cls()
        return cls

    return decorator


def get_family(name: str) -> CandidateFamily:
    """The registered family called ``name``."""
    _load_builtin_families()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ZooError(
            f"unknown candidate family {name!r}; registered families are {sorted(_FAMILIES)}"
        ) from None


def list_families() -> list[str]:
    """Names of every registered family."""
    _load_builtin_families()
    return sorted(_FAMILIES)


def build_candidate(spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
    """Build the module a spec describes."""
    family = get_family(spec.family)
    if family.teacher_derived and teacher_block is None:
        raise ZooError(f"candidate {spec.key!r} is derived from the teacher's block; pass that block to build it")
    return family.build(spec, teacher_block)


def load_plugins(paths_or_modules: list[str]) -> None:
    """Import user files or modules whose ``@register_family`` decorators add families.

    A file already loaded (same resolved path) is not executed again.
    """
    for item in paths_or_modules:
        try:
            import_source(item, "zoo plugin")
        except ConfigError as e:
            raise ZooError(str(e)) from None


def find_plugins(paths_or_modules: list[str]) -> None:
    """Check that every plugin file or top-level module exists, without executing any of them."""
    for item in paths_or_modules:
        if Path(item).suffix == ".py":
            if not Path(item).is_file():
                raise ZooError(f"zoo plugin file {item!r} does not exist")
        elif importlib.util.find_spec(item.split(".")[0]) is None:
            raise ZooError(f"zoo plugin module {item!r} cannot be found on the Python path")


def _load_builtin_families() -> None:
    from . import families  # noqa: F401  (registers the built-in families on import)
