"""The text of `fsclient query`: ranked neighbours, a summary by person, the timing.

As in `fsclient.format`: types in, text out; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence

from fsclient.format import format_box, format_distance, format_ms, neighbor_name
from fsclient.types import Face, FaceMatches, Neighbor, QueryResult

# Metadata beyond this is cut in the text (it may be a whole JSON document); --json has all.
METADATA_SHOWN = 80


def decided(result: QueryResult) -> bool:
    """Whether `match` means anything: the server sent the threshold it decided by, or (an
    older server, which sends none) called some neighbour a match."""
    return result.threshold is not None or any(
        n.match for matches in result.results for n in matches.neighbors
    )


def neighbor_verdict(neighbor: Neighbor, decided: bool) -> str:
    """`match`/`no match`; without a threshold (a vector-only server without --threshold)
    nothing was decided, and only an exact hit is worth a word."""
    if decided:
        return "match" if neighbor.match else "no match"
    return "same vector" if neighbor.distance == 0 else ""


def _one_line(text: str, limit: int = METADATA_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_neighbor_line(rank: int, neighbor: Neighbor, decided: bool = True) -> str:
    """`1. nearest neighbor is alice (id 7) with distance 0.3125 (match), metadata {...}`."""
    name = neighbor_name(neighbor)
    if neighbor.label:  # an unlabelled one is named by its id already
        name += f" (id {neighbor.id})"
    line = f"{rank}. nearest neighbor is {name} with distance {format_distance(neighbor.distance)}"
    verdict = neighbor_verdict(neighbor, decided)
    if verdict:
        line += f" ({verdict})"
    if neighbor.metadata:
        line += f", metadata {_one_line(neighbor.metadata)}"
    return line


def format_by_person(neighbors: Sequence[Neighbor], decided: bool = True) -> str | None:
    """`by person: alice 3 of 5 (nearest 0.3125, 2 matches), bob 2 of 5 (nearest 0.4410)`:
    who the neighbours are, nearest person first. None where it would only repeat the list:
    no label, or no label twice (e.g. each a file's path)."""
    labelled = [n for n in neighbors if n.label]
    if len(neighbors) < 2 or not labelled:
        return None
    groups: dict[str, list[Neighbor]] = {}
    for neighbor in neighbors:  # nearest first, so each group's first is its nearest
        groups.setdefault(neighbor.label or "(no label)", []).append(neighbor)
    if len(groups) == len(neighbors):
        return None
    parts = []
    for label, group in groups.items():
        said = f"nearest {format_distance(group[0].distance)}"
        matches = sum(n.match for n in group)
        if decided and matches:
            said += f", {matches} match{'es' if matches > 1 else ''}"
        parts.append(f"{label} {len(group)} of {len(neighbors)} ({said})")
    return "by person: " + ", ".join(parts)


def _face_header(number: int, face: Face | None) -> str:
    if face is not None and face.box is not None:
        return f"face {number} at {format_box(face.box)}:"
    return f"face {number}:"


def _format_face_matches(matches: FaceMatches, indent: str, decided: bool) -> list[str]:
    if not matches.neighbors:
        return [f"{indent}no neighbors (the index is empty)"]
    lines = [
        f"{indent}{format_neighbor_line(rank, neighbor, decided)}"
        for rank, neighbor in enumerate(matches.neighbors, start=1)
    ]
    summary = format_by_person(matches.neighbors, decided)
    if summary is not None:
        lines.append(f"{indent}{summary}")
    return lines


def format_neighbors(result: QueryResult) -> str:
    """Ranked neighbours; a header per face when an image held several; then the timing
    and what `match` was decided by."""
    said = decided(result)
    lines: list[str] = []
    if not result.results:
        lines.append("no faces")
    elif len(result.results) == 1:
        lines += _format_face_matches(result.results[0], "", said)
    else:
        for number, matches in enumerate(result.results, start=1):
            lines.append(_face_header(number, matches.face))
            lines += _format_face_matches(matches, "  ", said)
    timing = f"search took {format_ms(result.search_seconds)}"
    if result.embed_seconds > 0:
        timing += f" (embedding {format_ms(result.embed_seconds)})"
    if result.threshold is not None:
        timing += f"; match: distance <= {format_distance(result.threshold)}"
    elif not said and any(m.neighbors for m in result.results):
        timing += "; this server has no match threshold (fsserver --threshold sets one)"
    lines.append(timing)
    return "\n".join(lines)
