"""`make bench-peers`' verdicts and tables: pure functions of the results, nothing printed.

A system's result is a dict (as written to the JSON): system, status ("ok" or "failed"),
error, load_rate, rss_bytes, pss_bytes, per_ef [{ef, recall, p50_ms, p99_ms}], chosen_ef,
reached (whether the chosen ef reaches the target recall), qps {"1": .., "4": ..}, notes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

Result = Mapping[str, Any]

# The floors at the chosen ef: (what, how it is computed, the bound).
FLOORS = (
    "facesearch QPS 4 clients ÷ 1 client ≥ 1.8",
    "facesearch QPS 4 clients ≥ pgvector's",
    "facesearch p50 ≤ 0.75 of pgvector's p50",
)


def choose_ef(per_ef: Sequence[Mapping[str, Any]], target: float) -> tuple[int, bool]:
    """The smallest ef whose recall reaches `target`, and True; when none does, the most
    exact ef tried (the largest on a tie) and False."""
    if not per_ef:
        raise ValueError("no ef was measured")
    reaching = [p["ef"] for p in per_ef if p["recall"] >= target]
    if reaching:
        return int(min(reaching)), True
    best = max(per_ef, key=lambda p: (p["recall"], p["ef"]))
    return int(best["ef"]), False


def at_chosen(result: Result) -> Mapping[str, Any] | None:
    """The per-ef figures at the result's chosen ef (None: not measured)."""
    return next((p for p in result.get("per_ef", []) if p["ef"] == result.get("chosen_ef")), None)


def qps(result: Result | None, clients: int) -> float | None:
    value = (result or {}).get("qps", {}).get(str(clients))
    return None if value is None else float(value)


def scaling(result: Result | None, clients: int) -> float | None:
    """QPS at `clients` ÷ QPS at one client."""
    many, one = qps(result, clients), qps(result, 1)
    return None if many is None or not one else many / one


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def floors(results: Mapping[str, Result], clients: int = 4) -> list[tuple[str, str, str]]:
    """Each floor: (the floor, the figures it was judged on, "met" / "not met" /
    "not measured")."""
    fs, pg = results.get("facesearch"), results.get("pgvector")
    fs_at = at_chosen(fs) if fs else None
    pg_at = at_chosen(pg) if pg else None
    out: list[tuple[str, str, str]] = []

    ratio = scaling(fs, clients)
    figures = f"{_fmt(qps(fs, clients), 0)} ÷ {_fmt(qps(fs, 1), 0)} = {_fmt(ratio)}"
    out.append((FLOORS[0], figures, _verdict(ratio, lambda r: r >= 1.8)))

    mine, theirs = qps(fs, clients), qps(pg, clients)
    share = None if mine is None or not theirs else mine / theirs
    figures = f"{_fmt(mine, 0)} vs {_fmt(theirs, 0)} q/s (ratio {_fmt(share)})"
    out.append((FLOORS[1], figures, _verdict(share, lambda r: r >= 1.0)))

    mine_ms = None if fs_at is None else float(fs_at["p50_ms"])
    theirs_ms = None if pg_at is None else float(pg_at["p50_ms"])
    share = None if mine_ms is None or not theirs_ms else mine_ms / theirs_ms
    figures = f"{_fmt(mine_ms, 3)} vs {_fmt(theirs_ms, 3)} ms (ratio {_fmt(share)})"
    out.append((FLOORS[2], figures, _verdict(share, lambda r: r <= 0.75)))

    # Compared at unequal recall when either side never reached the target: say so.
    for name, result in (("facesearch", fs), ("pgvector", pg)):
        if result and result.get("per_ef") and not result.get("reached", True):
            out = [(f, f"{fig}; {name} below the target recall", v) for f, fig, v in out]
    return out


def _verdict(value: float | None, meets: Any) -> str:
    if value is None or math.isnan(value):
        return "not measured"
    return "met" if meets(value) else "not met"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def results_table(
    results: Sequence[Result], efs: Sequence[int], target: float, clients: int = 4
) -> str:
    """One row per system; each ef column reads recall@10 / p50 ms / p99 ms."""
    head = ["system", "load vec/s", "RSS MB (PSS)"]
    head += [f"ef {ef}" for ef in efs]
    head += [f"chosen ef (recall ≥ {target:g})", "QPS 1 client", f"QPS {clients} clients"]
    head += [f"{clients}÷1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r.get("status") != "ok" and not r.get("per_ef"):
            cells = [r["system"], f"failed: {r.get('error', '')}"] + ["—"] * (len(head) - 2)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            continue
        by_ef = {p["ef"]: p for p in r.get("per_ef", [])}
        rss, pss = r.get("rss_bytes"), r.get("pss_bytes")
        memory = "—" if rss is None else f"{rss / 2**20:,.0f} ({(pss or 0) / 2**20:,.0f})"
        cells = [r["system"], _fmt(r.get("load_rate"), 0), memory]
        for ef in efs:
            p = by_ef.get(ef)
            cells.append(
                "—"
                if p is None
                else f"{p['recall']:.3f} / {_fmt(p['p50_ms'], 3)} / {_fmt(p['p99_ms'], 3)}"
            )
        chosen = r.get("chosen_ef")
        chosen_text = "—" if chosen is None else str(chosen)
        if chosen is not None and not r.get("reached", True):
            chosen_text += " (not reached)"
        cells += [chosen_text, _fmt(qps(r, 1), 0), _fmt(qps(r, clients), 0)]
        cells.append(_fmt(scaling(r, clients)))
        if r.get("status") != "ok":
            cells[0] += f" (failed: {r.get('error', '')})"
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def floors_table(checks: Sequence[tuple[str, str, str]]) -> str:
    lines = ["| floor (at each system's chosen ef) | figures | verdict |", "|---|---|---|"]
    lines += [f"| {_cell(f)} | {_cell(fig)} | {v} |" for f, fig, v in checks]
    return "\n".join(lines)


def echo_line(echo: Mapping[str, Any], clients: int) -> str:
    """The gRPC floor as one sentence (bench/peers.py measure_echo)."""
    if echo.get("error") or "p50_ms" not in echo:
        return f"gRPC echo floor: not measured ({echo.get('error', 'no result')})"
    one, many = echo["qps"].get("1"), echo["qps"].get(str(clients))
    return (
        "gRPC echo floor (a Python grpc server that returns a Query's bytes unread, called by "
        f"a Python grpc client): p50 {echo['p50_ms']:.3f} ms, p99 {echo['p99_ms']:.3f} ms; "
        f"QPS 1 client {_fmt(one, 0)}, {clients} clients {_fmt(many, 0)} "
        f"({_fmt(scaling_of(one, many))} times)"
    )


def scaling_of(one: float | None, many: float | None) -> float | None:
    return many / one if one and many is not None else None


def markdown_report(doc: Mapping[str, Any]) -> str:
    """The whole .md: parameters, machine, the results table, the floors, each system's notes."""
    p = doc["parameters"]
    out = [f"# facesearch against its peers, {doc['date']}", "", "## Parameters", ""]
    out += [f"- {key}: {value}" for key, value in p.items()]
    out += ["", "## Machine", ""]
    out += [f"- {key}: {value}" for key, value in doc["machine"].items()]
    out += ["", "## Results", ""]
    out += [
        f"Each ef cell: recall@{p['k']} / p50 ms / p99 ms over {p['queries']} held-out "
        "queries, one per call from one client. RSS: the server's processes summed (PSS "
        "beside it counts pages they share once). QPS: client processes querying at the "
        f"chosen ef for {p['seconds']:g} s each.",
        "",
        results_table(doc["systems"], p["efs"], p["target_recall"], p["clients"]),
        "",
        floors_table(doc["floors"]),
        "",
        *([echo_line(doc["grpc_echo"], p["clients"]), ""] if "grpc_echo" in doc else []),
        "## Notes",
        "",
    ]
    for r in doc["systems"]:
        notes = dict(r.get("notes", {}))
        if r.get("error"):
            notes["error"] = r["error"]
        out.append(f"- {r['system']}: " + "; ".join(f"{k} {v}" for k, v in notes.items()))
    return "\n".join(out) + "\n"


def to_json(doc: Mapping[str, Any]) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(doc), indent=2, ensure_ascii=False) + "\n"
