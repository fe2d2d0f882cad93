"""The table of collections: name → Collection; create, drop and list, durable on disk.

Layout under --data-dir:
    (root)                      the "default" collection, where earlier releases kept their
                                one index: a data dir from before collections opens as is
    collections/NAME/           every other collection: collection.json (what it was created
                                with) beside its own WAL and snapshots
    collections/.creating-*     a create that did not finish (removed at start)
    collections/.dropped-*      a drop that was acknowledged (removed at start, or at once)

Create writes collection.json into a temporary folder and renames it into place; drop renames
the folder aside first; both fsync the parent. A crash at any point leaves each collection
whole or gone, and the server able to start. Lookups take a short lock; creating or dropping
takes another, so a slow create (loading a face model) never holds up calls on other
collections.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

from fsclient.types import CollectionInfo, CollectionSpec
from fsserver.collection.collection import Collection
from fsserver.config import Config
from fsserver.contract import SPACES, STORAGES
from fsserver.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from fsserver.faces.embedder import Embedder
from fsserver.faces.models import FaceModels
from fsserver.storage.files import fsync_path
from fsserver.storage.local import lock_directory

log = logging.getLogger(__name__)

DEFAULT = "default"
COLLECTIONS_DIR = "collections"
SPEC_FILE = "collection.json"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CREATING, _DROPPED = ".creating-", ".dropped-"
MAX_DIM = 65_536
MAX_M = 256


class Catalog:
    def __init__(self, config: Config, embedder: Embedder | None = None) -> None:
        self.config = config
        self.faces = FaceModels(config, embedder)
        self._collections: dict[str, Collection] = {}
        self._lookup = threading.Lock()  # held for dict reads and writes only
        self._changes = threading.Lock()  # one create or drop at a time
        self._lock_fd: int | None = None
        self._loaded = False

    # ---- start-up and shut-down ------------------------------------------------------

    def open(self) -> None:
        """Lock the data directory, load the default collection's face model, then open
        the default collection and every created one."""
        data_dir = Path(self.config.data_dir)
        # One server per data directory (two appending to one WAL would corrupt it);
        # taken before the model loads, so a second server fails at once.
        self._lock_fd = lock_directory(data_dir)
        face = None if self.config.vector_only else self.faces.get(self.config.model)
        default = Collection(DEFAULT, self.config, face)
        default.open()
        self._collections[DEFAULT] = default
        folder = data_dir / COLLECTIONS_DIR
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.name.startswith((_CREATING, _DROPPED)):
                    shutil.rmtree(path, ignore_errors=True)  # unfinished create, or dropped
                elif (path / SPEC_FILE).is_file():
                    spec = _read_spec(path)
                    self._collections[spec.name] = self._open(spec, path)
        self._loaded = True

    def close(self) -> None:
        for collection in self.all():
            collection.close()
        self.faces.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    # ---- lookups ---------------------------------------------------------------------

    def get(self, name: str) -> Collection:
        name = name or DEFAULT
        with self._lookup:
            collection = self._collections.get(name)
        if collection is None:
            if not self._loaded:
                raise Unavailable("the server is still loading its model and index")
            check_name(name)
            raise NotFound(f"there is no collection {name!r}")
        return collection

    @contextmanager
    def leased(self, name: str) -> Iterator[Collection]:
        """The collection, held so that a drop waits for this call to end."""
        with self.get(name).leased() as collection:
            yield collection

    @property
    def default(self) -> Collection:
        return self.get(DEFAULT)

    def all(self) -> list[Collection]:
        with self._lookup:
            return list(self._collections.values())

    def list(self) -> list[CollectionInfo]:
        infos = []
        for collection in self.all():
            try:
                with collection.leased():
                    infos.append(collection.info())
            except NotFound:
                continue  # dropped while listing
        return sorted(infos, key=lambda info: (info.name != DEFAULT, info.name))

    # ---- create and drop -------------------------------------------------------------

    def create(self, spec: CollectionSpec) -> CollectionInfo:
        check_name(spec.name)
        spec = self._complete(spec)
        with self._changes:
            with self._lookup:
                if spec.name in self._collections:
                    raise AlreadyExists(f"collection {spec.name!r} already exists")
                if len(self._collections) >= self.config.max_collections:
                    raise ResourceExhausted(
                        f"this server holds {len(self._collections)} collections; the limit "
                        f"is {self.config.max_collections} (--max-collections)"
                    )
            if self.config.backend == "ray":
                raise FailedPrecondition(
                    "with --backend ray only the default collection is sharded; this release "
                    "creates no other collections on Ray (start a local server for them)"
                )
            folder = self._write_spec(spec)
            try:
                collection = self._open(spec, folder)
            except BaseException:
                self._remove(folder)  # never half there: gone before the error is answered
                raise
            with self._lookup:
                self._collections[spec.name] = collection
        log.info("created collection %r (%s)", spec.name, _describe(spec))
        return collection.info()

    def drop(self, name: str) -> int:
        """Remove a collection and its data; durable once this returns."""
        check_name(name)
        if name == DEFAULT:
            raise FailedPrecondition("the default collection cannot be dropped")
        with self._changes:
            collection = self.get(name)
            items = collection.store.stats().count
            collection.retire()  # new calls: NOT_FOUND; running ones finish; then closed
            with self._lookup:
                del self._collections[name]
            self._remove(Path(collection.config.data_dir))
        log.info("dropped collection %r (%d items)", name, items)
        return items

    # ---- on disk ---------------------------------------------------------------------

    def _complete(self, spec: CollectionSpec) -> CollectionSpec:
        """Check the request and fill in the server's defaults."""
        if bool(spec.model) == bool(spec.dim):
            raise InvalidArgument("a collection needs exactly one of a face model or a dim")
        if spec.dim and not 1 <= spec.dim <= MAX_DIM:
            raise InvalidArgument(f"dim must be between 1 and {MAX_DIM}, not {spec.dim}")
        if spec.model:
            check_model(spec.model)
        space = spec.space or self.config.space
        storage = spec.storage or self.config.storage
        if space not in SPACES:
            raise InvalidArgument(f"space must be one of {', '.join(SPACES)}, not {space!r}")
        if storage not in STORAGES:
            raise InvalidArgument(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
        m = spec.m or self.config.m
        if not 2 <= m <= MAX_M:
            raise InvalidArgument(f"m must be between 2 and {MAX_M}, not {m}")
        ef_construction = spec.ef_construction or self.config.ef_construction
        return replace(spec, space=space, storage=storage, m=m, ef_construction=ef_construction)

    def _open(self, spec: CollectionSpec, folder: Path) -> Collection:
        config = replace(
            self.config,
            data_dir=folder,
            model=spec.model,
            dim=spec.dim or None,
            space=spec.space,
            storage=spec.storage,
            m=spec.m,
            ef_construction=spec.ef_construction,
            threshold=None,  # --threshold is the default collection's; others calibrate
        )
        face = None
        if spec.model:
            try:
                face = self.faces.get(spec.model)
            except ServiceError:
                raise
            except Exception as error:  # a model that cannot load here (no weights offline)
                raise FailedPrecondition(
                    f"face model {spec.model!r} cannot load: {error}"
                ) from None
        collection = Collection(spec.name, config, face)
        collection.open()
        return collection

    def _write_spec(self, spec: CollectionSpec) -> Path:
        parent = Path(self.config.data_dir) / COLLECTIONS_DIR
        parent.mkdir(exist_ok=True)
        staging = parent / f"{_CREATING}{spec.name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        with open(staging / SPEC_FILE, "w") as file:
            json.dump(_spec_json(spec), file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        fsync_path(staging)
        folder = parent / spec.name
        os.rename(staging, folder)
        fsync_path(parent)
        return folder

    def _remove(self, folder: Path) -> None:
        aside = folder.parent / f"{_DROPPED}{folder.name}-{uuid.uuid4().hex[:8]}"
        os.rename(folder, aside)
        fsync_path(folder.parent)  # from here the collection is gone, also after a crash
        shutil.rmtree(aside, ignore_errors=True)

    # ---- the server's state ----------------------------------------------------------

    @property
    def unsaved_changes(self) -> bool:
        return any(c.unsaved_changes for c in self.all())

    def save_unsaved(self) -> None:
        for collection in self.all():
            if collection.unsaved_changes:
                collection.save()


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"a collection name is 1 to 64 letters, digits, '_' or '-', not {name[:80]!r}"
        )


def check_model(model: str) -> None:
    try:
        from deepface.config.threshold import thresholds
    except ImportError:
        return  # the load says what is wrong
    if model not in thresholds:
        raise InvalidArgument(
            f"unknown face model {model[:80]!r}; DeepFace's are {', '.join(sorted(thresholds))}"
        )


def _spec_json(spec: CollectionSpec) -> dict[str, object]:
    return {"format": 1, **asdict(spec)}


def _read_spec(folder: Path) -> CollectionSpec:
    data = json.loads((folder / SPEC_FILE).read_text())
    data.pop("format", None)
    return CollectionSpec(**data)


def _describe(spec: CollectionSpec) -> str:
    kind = f"face model {spec.model}" if spec.model else f"raw dim {spec.dim}"
    return f"{kind}, {spec.space}/{spec.storage}, M {spec.m}"
