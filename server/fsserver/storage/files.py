"""Durable file-system steps: what a crash must not undo is fsynced, and so is the folder
that names it (a rename or a new file is only durable once its directory is)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
