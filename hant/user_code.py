"""The user's own Python code that a recipe or saved student names: plugin files and factories.

A factory reference is ``path/to/file.py:function`` or ``package.module:function``; the function
returns what the recipe section asks for (a teacher module, the data splits). Naming code is not
running it: callers run it only when the user allowed it (``allow_plugins`` / ``--allow-plugins``).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from .errors import ConfigError, PluginError

ALLOW_HINT = "read it, then pass --allow-plugins (API: allow_plugins=True) if you trust it"


def import_source(item: str, what: str = "plugin") -> ModuleType:
    """Import a Python file (by path, once per resolved path) or a module (by dotted name)."""
    path = Path(item)
    if path.suffix != ".py":
        try:
            return importlib.import_module(item)
        except ImportError as e:
            raise ConfigError(f"cannot import {what} module {item!r}: {e}") from e
    if not path.is_file():
        raise ConfigError(f"{what} file {item!r} does not exist")
    resolved = path.resolve()
    name = f"hant_plugin_{path.stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def split_reference(ref: str) -> tuple[str, str]:
    """``("file.py" or "package.module", "function")`` of a factory reference."""
    source, sep, attr = ref.rpartition(":")
    if not sep or not source or not attr.isidentifier():
        raise ConfigError(f"factory reference {ref!r} must be 'path/to/file.py:function' or 'package.module:function'")
    return source, attr


def portable_reference(ref: str) -> str:
    """The reference with a file path made absolute, so it resolves from any working directory."""
    source, attr = split_reference(ref)
    return f"{Path(source).resolve()}:{attr}" if source.endswith(".py") else ref


def reference_of(factory: str | Callable[..., Any]) -> str:
    """A factory reference for a module-level function (one defined in the script being run is named by
    that script's path), or the reference string as given."""
    if isinstance(factory, str):
        split_reference(factory)
        return factory
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not callable(factory) or not module or not name.isidentifier():
        raise ConfigError(f"factory {factory!r} must be a module-level function (or a 'file.py:function' reference)")
    source = getattr(sys.modules.get(module), "__file__", None) if module == "__main__" or module.startswith("hant_plugin_") else module
    if not source:
        raise ConfigError(f"factory {name!r} is defined where no file holds it; define it in a .py file")
    return portable_reference(f"{source}:{name}")


def check_allowed(what: str, refs: list[str], allow: bool) -> None:
    """Refuse to run the code ``refs`` name (``what`` says where they come from) unless allowed."""
    if refs and not allow:
        raise PluginError(f"{what} names {refs}, which is Python code that runs; {ALLOW_HINT}")


def resolve_factory(ref: str) -> Callable[..., Any]:
    """The function a factory reference names (its file or module is imported)."""
    source, attr = split_reference(ref)
    module = import_source(source, "factory")
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"factory reference {ref!r}: {source} has no function {attr!r}")
    return fn
