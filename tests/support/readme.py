"""Code blocks read out of README.rst, so a test runs them as written and the
two cannot drift."""
from __future__ import annotations

import textwrap
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.rst"


def readme_block(heading: str, opener: str) -> str:
    """The first indented block after ``opener`` under the section whose title
    line is ``heading`` (its underline included), dedented."""
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    block = section.split(opener, 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break  # the block ends at the first line not indented
        lines.append(line)
    return textwrap.dedent("\n".join(lines))
