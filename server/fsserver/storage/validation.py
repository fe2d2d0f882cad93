"""What a vector must be to be stored or searched: checked before the WAL ever sees it.

Everything Voyager would refuse or mangle is refused here with INVALID_ARGUMENT, because a
logged change must always replay.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fsclient.types import FloatArray
from fsserver.contract import EmbeddingContract
from fsserver.errors import InvalidArgument

E4M3_MAX = 448.0  # the largest finite 8-bit float (E4M3) Voyager stores
# Squared lengths outside this range are looked at more closely: float32 of an ordinary
# size read in the wrong byte order is enormous, NaN or vanishingly small.
ODD_BELOW, ODD_ABOVE = 1e-24, 1e12
TINY = 1e-30  # a non-zero component below this is no measurement (subnormal range)


def validate_vector(contract: EmbeddingContract, vector: FloatArray) -> FloatArray:
    """The vector as a writable float32 row, or InvalidArgument saying what is wrong.

    Everything Voyager would refuse or mangle is refused here, before the WAL sees it:
    a logged change must always replay.
    """
    # Voyager reads only writable float32; an array that already is one is used as it is
    # (Voyager copies what it stores or searches), anything else is copied once.
    array = np.asarray(vector, dtype=np.float32).ravel()
    if not array.flags.writeable:
        array = array.copy()
    if array.size != contract.dim:
        raise InvalidArgument(
            f"vector has dimension {array.size}, this index holds dimension {contract.dim}"
        )
    return validate_matrix(contract, array[None, :])[0]


def validate_matrix(contract: EmbeddingContract, matrix: FloatArray) -> FloatArray:
    """validate_vector for every row of a rows x dim float32 matrix at once."""
    rows = f"row {{}} of {len(matrix)}: " if len(matrix) > 1 else ""

    def refuse(bad: np.ndarray, message: str) -> InvalidArgument:
        return InvalidArgument(rows.format(int(np.flatnonzero(bad)[0])) + message)

    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        squared_norms = np.einsum("ij,ij->i", matrix, matrix)  # in float32, as Voyager
    # One check on the norms catches NaN, Inf, overflow and the byte-swapped alike (the
    # query hot path: one range test); only rows outside the range are looked at closer.
    ordinary = (squared_norms >= ODD_BELOW) & (squared_norms <= ODD_ABOVE)  # NaN: False
    if not ordinary.all():
        _refuse_the_broken(matrix, squared_norms, ~ordinary, refuse)
    if contract.space == "cosine" and (zero := np.asarray(squared_norms == 0.0)).any():
        raise refuse(
            zero,
            "a zero (or vanishingly small) vector has no direction in cosine space",
        )
    if contract.storage == "e4m3" and contract.space != "cosine":
        # Cosine vectors are normalised before quantising; raw ones must fit E4M3.
        largest = np.abs(matrix).max(axis=1)
        if (largest > E4M3_MAX).any():
            over = largest > E4M3_MAX
            raise refuse(
                over,
                f"vector has a component of magnitude {float(largest[over][0]):g}; this "
                f"index stores E4M3 floats, which hold at most ±{E4M3_MAX:g}",
            )
    return matrix


def _refuse_the_broken(
    matrix: FloatArray,
    squared_norms: FloatArray,
    odd: np.ndarray,
    refuse: Callable[[np.ndarray, str], InvalidArgument],
) -> None:
    """Raise for a row that is byte-swapped, holds NaN or Inf, or overflows; rows that are
    merely tiny or huge (a zero vector, say) pass, as Voyager takes them."""
    for position in np.flatnonzero(odd):
        if byte_swapped(matrix[position]):
            raise refuse(
                np.arange(len(matrix)) == position,
                "vector looks byte-swapped: its floats read as ordinary numbers in "
                "the other byte order; send little-endian float32",
            )
    finite = np.asarray(np.isfinite(matrix).all(axis=1))
    if not finite.all():
        raise refuse(~finite, "vector contains NaN or Inf")
    if not np.isfinite(squared_norms).all():
        raise refuse(
            ~np.isfinite(squared_norms),
            "vector is too large: its squared length overflows float32, so no distance "
            "to it could be computed",
        )


def byte_swapped(row: FloatArray) -> bool:
    """Whether a float32 row is odd (NaN, Inf, huge or subnormal) and sane byte-swapped.

    A client that packs big-endian floats (Java's ByteBuffer by default, network order)
    sends vectors that are valid floats but nonsense; said so, the fix is obvious.
    """

    def sane(values: FloatArray) -> bool:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            squared = float(np.dot(values.astype(np.float64), values.astype(np.float64)))
            magnitudes = np.abs(values[values != 0])
        return (
            bool(np.isfinite(values).all())
            and ODD_BELOW <= squared <= ODD_ABOVE
            and not (magnitudes < TINY).any()
        )

    row = np.asarray(row, dtype=np.float32)
    return not sane(row) and sane(row.byteswap())


def require_label(label: str) -> None:
    """People's calls name a person: an empty label is no one."""
    if not label:
        raise InvalidArgument("the label must not be empty: unlabelled items are no person")
