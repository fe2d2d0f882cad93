"""Pure formatters of the people commands: people, list, forget, rename, identify, verify.

As in `fsclient.format`: types in, text out; nothing here prints. Distances are written by
`format_distance` (4 decimals, as everywhere), similarities with 2.
"""

from __future__ import annotations

from collections.abc import Sequence

from fsclient.format import format_box, format_distance, format_ms
from fsclient.types import (
    Candidate,
    DecisionRule,
    Identification,
    IdentifyResult,
    ItemSummary,
    Person,
    VerifyResult,
)


def shown(text: str) -> str:
    """A label as one printable line: control characters (a newline, an escape) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def columns(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Rows of cells as aligned columns, two spaces apart; `right` aligns a column right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if flush else cell.ljust(width)
            for cell, width, flush in zip(row, widths, right, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


# ---- people and items --------------------------------------------------------------------


def format_people(people: Sequence[Person]) -> str:
    """A person per line with their item count, then the totals."""
    if not people:
        return "no people (no item has a label)"
    rows = [("person", "items")] + [(shown(p.label), str(p.count)) for p in people]
    items = sum(p.count for p in people)
    footer = f"{len(people)} {'person' if len(people) == 1 else 'people'}, {_plural(items, 'item')}"
    return "\n".join([*columns(rows, (False, True)), footer])


def format_items(items: Sequence[ItemSummary], label: str | None = None) -> str:
    """An item per line: id, label, metadata; then how many (and whose)."""
    footer = _plural(len(items), "item")
    if label:
        footer += f" labelled {shown(label)!r}"
    elif label is not None:
        footer += " unlabelled"  # --label '': the items without one
    if not items:
        return footer
    rows = [("id", "label", "metadata")] + [
        (str(i.id), shown(i.label) or "(none)", shown(i.metadata)) for i in items
    ]
    return "\n".join([*columns(rows, (True, False, False)), footer])


def format_forget(label: str, deleted: int) -> str:
    return f"forgot {shown(label)}: deleted {_plural(deleted, 'item')}"


def format_rename(old: str, new: str, renamed: int, merged: bool) -> str:
    said = f"renamed {shown(old)} to {shown(new)}: {_plural(renamed, 'item')}"
    if merged:
        said += f", merged into the existing person {shown(new)}"
    return said


# ---- identify ----------------------------------------------------------------------------


def identity_name(result: Identification) -> str:
    """The person, or `unknown`."""
    return shown(result.person) if result.known else "unknown"


def format_identification_line(title: str, result: Identification) -> str:
    """`face 1: Colin_Powell (similarity 0.83)` or `face 1: unknown (nearest: …)`."""
    if result.known:
        return f"{title}: {shown(result.person)} (similarity {result.similarity:.2f})"
    if not result.candidates:
        return f"{title}: unknown (no enrolled person)"
    nearest = result.candidates[0]
    return (
        f"{title}: unknown (nearest: {shown(nearest.person)}, similarity {result.similarity:.2f})"
    )


def format_candidates(candidates: Sequence[Candidate], indent: str = "  ") -> list[str]:
    """One aligned line per candidate person: distance, similarity, items within the
    threshold (`near`)."""
    rows = [
        (
            f"{rank}. {shown(c.person)}",
            f"distance {format_distance(c.distance)}",
            f"similarity {c.similarity:.2f}",
            f"near {c.near}",
        )
        for rank, c in enumerate(candidates, start=1)
    ]
    if not rows:
        return []
    return [indent + line for line in columns(rows, (False, False, False, False))]


def format_rule(rule: DecisionRule, threshold: float | None = None) -> str:
    """The rule an answer was decided by; `threshold` when --threshold overrode it."""
    if threshold is not None:
        limit = f"threshold {format_distance(threshold)} (given)"
    else:
        limit = f"threshold {format_distance(rule.threshold)} ({rule.source})"
    return f"{limit}, margin {format_distance(rule.margin)}"


def format_identify(
    result: IdentifyResult, *, quiet: bool = False, threshold: float | None = None
) -> str:
    """A line per face; unless quiet, its box and candidates below, then the rule and timing."""
    lines: list[str] = []
    for number, identification in enumerate(result.results, start=1):
        face = identification.face
        title = f"face {number}" if face is not None else "vector"
        lines.append(format_identification_line(title, identification))
        if quiet:
            continue
        if face is not None and face.box is not None:
            lines.append(f"  at {format_box(face.box)}")
        lines += format_candidates(identification.candidates)
    if not result.results:
        lines.append("no faces")
    if not quiet:
        timing = f"search took {format_ms(result.search_seconds)}"
        if result.embed_seconds > 0:
            timing += f" (embedding {format_ms(result.embed_seconds)})"
        lines.append(f"decided with {format_rule(result.decision, threshold)}; {timing}")
    return "\n".join(lines)


# ---- verify ------------------------------------------------------------------------------


def format_verify(result: VerifyResult, person: str | None = None, *, quiet: bool = False) -> str:
    """`same person (distance …, similarity …, threshold …)` or `different people (…)`;
    against an enrolled `person`: `same person as P (…)` or `different person from P (…)`.
    Unless quiet, a second line says which faces were compared."""
    numbers = (
        f"(distance {format_distance(result.distance)}, similarity {result.similarity:.2f}, "
        f"threshold {format_distance(result.threshold)})"
    )
    if person is None:
        verdict = "same person" if result.same else "different people"
    else:
        verdict = f"{'same person as' if result.same else 'different person from'} {shown(person)}"
    lines = [f"{verdict} {numbers}"]
    if not quiet:
        face = format_box(result.face.box) if result.face and result.face.box else "?"
        if person is None:
            other = result.other_face
            other_box = format_box(other.box) if other and other.box else "?"
            lines.append(f"compared the largest faces: {face} and {other_box}")
        else:
            lines.append(
                f"compared the largest face, {face}, with {shown(person)}'s nearest item "
                f"(id {result.other_id})"
            )
    return "\n".join(lines)
