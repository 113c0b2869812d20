"""The README stays a user manual: short, and pointing only at files inside the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_short_and_links_only_into_the_repository():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 300
    assert "../" not in text
    for path in re.findall(r"`((?:docs|benchmarks|recipes)/[\w./-]+\.(?:md|py|yaml))`", text):
        assert (ROOT / path).is_file(), f"README names {path}, which does not exist"
