"""Progress bars for long work: off in library use, switched on by the CLI."""
from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")
_enabled = False


def enable_progress(on: bool = True) -> None:
    """Show progress bars (the CLI turns them on; library callers get none by default)."""
    global _enabled
    _enabled = on


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when progress bars are on."""
    if not _enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)


class ProgressCounter:
    """A bar driven by ``(done, total)`` callbacks, for work that reports its own progress."""

    def __init__(self, desc: str, unit: str = "it"):
        self.desc, self.unit, self._bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        if not _enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False, dynamic_ncols=True)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
