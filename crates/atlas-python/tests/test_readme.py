"""The README's Python quick start, run as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_readme_python_block_runs() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 1, f"expected one ```python block in README.md, found {len(blocks)}"
    code = compile(blocks[0], str(ROOT / "README.md"), "exec")
    exec(code, {"__name__": "readme"})  # noqa: S102 - the point of the test


def test_python_md_create_datasets_example_runs() -> None:
    """docs/python.md's `create_datasets` example, run as written."""
    text = (ROOT / "docs" / "python.md").read_text(encoding="utf-8")
    blocks = [
        b
        for b in re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
        if "create_datasets(" in b
    ]
    assert len(blocks) == 1, f"expected one create_datasets example, found {len(blocks)}"
    exec(compile(blocks[0], str(ROOT / "docs" / "python.md"), "exec"), {"__name__": "docs"})  # noqa: S102
