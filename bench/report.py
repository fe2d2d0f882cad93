"""The results as JSON and as a Markdown table: pure formatting, nothing printed here."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from bench.common import Row

COLUMNS = ("section", "metric", "facesearch", "baseline", "ratio", "floor", "pass", "note")


def number(value: float | None) -> str:
    """A figure for the table: '—' when missing, thousands separated, ~4 digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.4g}"


def verdict(row: Row) -> str:
    if row.passed is None:
        return ""
    return "yes" if row.passed else "**NO**"


def _cell(text: str) -> str:
    # A pipe would end the cell; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def table_rows(rows: list[Row]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows:
        baseline = number(row.baseline)
        if row.baseline_name and row.baseline is not None:
            baseline = f"{baseline} ({row.baseline_name})"
        out.append(
            (
                row.section,
                row.metric,
                number(row.facesearch),
                baseline,
                "—" if row.ratio is None else f"{row.ratio:.4g}",
                row.floor,
                verdict(row),
                row.note,
            )
        )
    return out


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(c) for c in cells) + " |" for cells in table_rows(rows)]
    return "\n".join(lines)


def floor_summary(rows: list[Row]) -> str:
    """One line: how many floors were met, and which were not."""
    judged = [r for r in rows if r.passed is not None]
    failed = [
        f"{r.section}: {r.metric} ({number(r.ratio)} vs {r.floor})" for r in judged if not r.passed
    ]
    line = f"floors met: {len(judged) - len(failed)} of {len(judged)}"
    return line + ("; not met: " + "; ".join(failed) if failed else "")


def _facts(title: str, facts: dict[str, Any]) -> list[str]:
    lines = [f"## {title}", ""]
    lines += [
        f"- {key}: {value if value not in (None, '') else '—'}" for key, value in facts.items()
    ]
    return [*lines, ""]


def markdown_report(result: dict[str, Any]) -> str:
    """The whole .md file: parameters, machine, the table, the floors, the sections."""
    rows = [Row(**r) for r in result["rows"]]
    lines = [f"# facesearch benchmark, {result['date']}", ""]
    lines += _facts("Parameters", result["parameters"])
    lines += _facts("Machine", result["machine"])
    lines += ["## Results", "", markdown_table(rows), "", floor_summary(rows), ""]
    lines += ["## Sections", ""]
    for s in result["sections"]:
        error = f" — {s['error']}" if s.get("error") else ""
        lines.append(f"- {s['id']} {s['title']}: {s['status']} in {s['seconds']:.1f} s{error}")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    """JSON-safe: NaN/inf become null (JSON has no NaN), numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def row_dict(row: Row) -> dict[str, Any]:
    return dict(_plain(asdict(row)))


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(_plain(result), indent=2) + "\n"
