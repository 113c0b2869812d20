"""The comparison benchmark's data set-up: Debian's ``dataset-fashion-mnist`` installed when a recipe
reads Fashion-MNIST from its default directory and the files are not there.

Only the default directory is filled this way: a recipe that names its own ``data.root`` gets that
directory checked by the data loader, which names the files it looked for.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable

from hant.config import Recipe
from hant.errors import ConfigError
from hant.fashion_mnist import DEFAULT_ROOT, IMAGES, LABELS, idx_file

PACKAGE = "dataset-fashion-mnist"


def default_root_complete() -> bool:
    """Whether :data:`DEFAULT_ROOT` holds all four IDX files (raw or .gz)."""
    try:
        for name in (*IMAGES.values(), *LABELS.values()):
            idx_file(DEFAULT_ROOT, name)
    except ConfigError:
        return False
    return True


def needs_default_root(recipes: Iterable[Recipe]) -> bool:
    """Whether any recipe reads Fashion-MNIST from the default directory."""
    return any(r.data.dataset == "fashion_mnist" and r.data.root is None for r in recipes)


def install_commands() -> list[list[str]]:
    """The apt commands that install the package (non-interactive)."""
    return [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", PACKAGE]]


def ensure_fashion_mnist(recipes: Iterable[Recipe], say: Callable[[str], None]) -> None:
    """Install :data:`PACKAGE` with apt when a recipe needs the default directory and it is incomplete.

    Raises ConfigError saying what to do where apt is absent, the process is not root, or the
    install leaves the files missing."""
    if not needs_default_root(recipes) or default_root_complete():
        return
    manual = (f"install Debian's {PACKAGE} (`apt-get install {PACKAGE}` as root) or give the recipes "
              f"`data.root: DIR` with the four Fashion-MNIST IDX files")
    if shutil.which("apt-get") is None:
        raise ConfigError(f"Fashion-MNIST is not in {DEFAULT_ROOT} and this machine has no apt-get: {manual}")
    if os.geteuid() != 0:
        raise ConfigError(f"Fashion-MNIST is not in {DEFAULT_ROOT} and installing it needs root: {manual}")
    for cmd in install_commands():
        say(f"setup: {' '.join(cmd)}")
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ConfigError(f"`{' '.join(cmd)}` failed ({done.returncode}): {tail[0]}; {manual}")
    if not default_root_complete():
        raise ConfigError(f"{PACKAGE} is installed but {DEFAULT_ROOT} still lacks its IDX files; {manual}")
