"""Benchmark results: a JSON file and a markdown table under bench/results/."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def plain(value: Any) -> Any:
    """`value` with numpy scalars as Python numbers, so it prints as a number."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value.item() if hasattr(value, "item") and not isinstance(value, str | bytes) else value


def write_results(out: Path, name: str, summary: dict[str, Any], rows: Sequence[dict[str, Any]],
                  columns: Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **plain(summary)}
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    header = "\n".join(f"- {k}: {v}" for k, v in summary.items() if k != "levels" and not isinstance(v, list))
    (out / f"{name}.md").write_text(f"# {name}\n\n{header}\n\n{markdown_table(rows, columns)}\n")
    print(f"wrote {out / name}.json and .md")
