"""The text `fsclient add` ends with: what was added, what failed and why, what was there.

As in `fsclient.format`: types in, text out; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence

from fsclient.format import AddOutcome, format_error


def _existing(outcome: AddOutcome) -> str:
    """`id 0 (alice)`: the item that already held this face."""
    neighbor = outcome.duplicate_of
    if neighbor is None:
        return "an enrolled item"
    return f"id {neighbor.id}" + (f" ({neighbor.label})" if neighbor.label else "")


def format_add_summary(
    added: int,
    failures: Sequence[AddOutcome],
    added_id: int | None = None,
    duplicates: Sequence[AddOutcome] = (),
) -> str:
    """`added N, failed M`, then one line per failed item: its source and the reason; then
    the items whose face was enrolled already (the same photo again): skipped with
    --skip-existing, else stored a second time, which a user rarely means to do.

    `added_id` is shown when exactly one item was added: the id the caller will want next.
    """
    skipped = [d for d in duplicates if d.skipped]
    head = f"added {added}"
    if added == 1 and added_id is not None:
        head += f" (id {added_id})"
    head += f", failed {len(failures)}"
    if skipped:
        head += f", skipped {len(skipped)} already enrolled"
    lines = [head]
    for failure in failures:
        error = failure.result.error
        reason = format_error(error) if error is not None else "unknown error"
        lines.append(f"  {failure.source}: {reason}")
    stored_again = [d for d in duplicates if not d.skipped]
    if stored_again:
        lines.append(
            f"{len(stored_again)} already enrolled, stored again "
            "(`add --skip-existing` skips such photos):"
        )
        lines += [
            f"  {d.source}: the same face as {_existing(d)}; now also id {d.result.id}"
            for d in stored_again
        ]
    lines += [f"  {d.source}: skipped, the same face as {_existing(d)}" for d in skipped]
    return "\n".join(lines)
