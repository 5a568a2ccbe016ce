"""The model store: verified, atomically published model revisions.

Layout (docs/architecture.md)::

    <root>/<alias>/<revision>/          exported files + manifest.json
    <root>/<alias>/CURRENT              names the live revision directory (atomic replace)
    <root>/.staging/<alias>.<token>/    work in progress; never read by servers
    <root>/.locks/<alias>.lock          one writer per alias (see ``AliasLock``)

A revision directory appears only by an atomic rename of a complete staging directory whose
manifest lists every file with its size and sha256, so a reader never sees a half-written
model. Readers check sizes on every resolve and sha256 once per process per revision.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from hflambda.errors import LockHeld, ModelNotReady, StoreCorrupt, StoreUnreadable

__all__ = [
    "AliasLock",
    "FileEntry",
    "Manifest",
    "ModelStore",
    "PublishedModel",
    "sha256_file",
]

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
STAGING = ".staging"
LOCKS = ".locks"
TRASH = ".trash"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class FileEntry(BaseModel):
    """One exported file: its size and content hash."""

    size: int
    sha256: str


class Manifest(BaseModel):
    """What a revision directory holds and how it was made."""

    format: int = 1
    alias: str
    repo: str
    revision: str
    source: str
    task: str
    files: dict[str, FileEntry] = Field(default_factory=dict)
    # the source files the export was made from, as fetched and verified (provenance)
    source_files: dict[str, FileEntry] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    info: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    def export_key(self) -> str:
        """A short hash of the export settings: same revision + same key = same model."""
        blob = json.dumps(self.export, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


def export_key(settings: dict[str, Any]) -> str:
    """The export-settings hash for settings not yet in a manifest."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


@dataclass(frozen=True)
class PublishedModel:
    """A verified revision directory, ready to load."""

    alias: str
    path: Path
    manifest: Manifest

    @property
    def revision(self) -> str:
        """The source revision this model was exported from."""
        return self.manifest.revision

    def file(self, name: str) -> Path:
        """Path of one manifest-listed file."""
        return self.path / name


class ModelStore:
    """Read and publish model revisions under one root folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._verified: set[tuple[str, float]] = set()

    # --- reading -------------------------------------------------------------------------

    def current_name(self, alias: str) -> str | None:
        """The directory name CURRENT points at, or None when the alias was never published."""
        pointer = self.root / alias / CURRENT
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:  # not "not warmed": the store is missing its mount or permissions
            raise StoreUnreadable(alias, pointer, exc) from exc
        return name or None

    def read_manifest(self, alias: str, name: str) -> Manifest | None:
        """The manifest of one revision directory, or None if missing/unreadable."""
        try:
            raw = (self.root / alias / name / MANIFEST).read_text(encoding="utf-8")
            return Manifest.model_validate_json(raw)
        except (FileNotFoundError, ValueError):
            return None

    def resolve(self, alias: str, *, verify_hashes: bool | None = None) -> PublishedModel:
        """The live, verified revision of ``alias``; ModelNotReady says precisely why not."""
        name = self.current_name(alias)  # StoreUnreadable when the folder cannot be read at all
        if not self.root.is_dir():
            raise ModelNotReady(alias, f"the model store {self.root} does not exist; run warmup")
        if name is None:
            raise ModelNotReady(
                alias, f"not warmed: {self.root / alias / CURRENT} does not exist; run warmup"
            )
        path = self.root / alias / name
        if not path.is_dir():
            raise StoreCorrupt(alias, f"CURRENT names {name!r} but {path} does not exist")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise StoreCorrupt(alias, f"manifest missing: {manifest_path}")
        try:
            manifest = Manifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise StoreCorrupt(alias, f"manifest unreadable: {manifest_path}: {exc}") from exc
        self._verify(alias, path, manifest, verify_hashes)
        return PublishedModel(alias=alias, path=path, manifest=manifest)

    def _verify(self, alias: str, path: Path, manifest: Manifest, hashes: bool | None) -> None:
        for rel, entry in manifest.files.items():
            file = path / rel
            try:
                size = file.stat().st_size
            except FileNotFoundError:
                raise StoreCorrupt(alias, f"file missing: {file} (listed in the manifest)") from None
            if size != entry.size:
                raise StoreCorrupt(
                    alias, f"file size mismatch: {file} is {size} bytes, manifest says {entry.size}"
                )
        key = (str(path), (path / MANIFEST).stat().st_mtime)
        if hashes is False or (hashes is None and key in self._verified):
            return
        for rel, entry in manifest.files.items():
            if sha256_file(path / rel) != entry.sha256:
                raise StoreCorrupt(
                    alias, f"file hash mismatch: {path / rel} differs from its manifest sha256"
                )
        self._verified.add(key)

    def published(self, alias: str) -> list[str]:
        """Revision directory names present for ``alias``."""
        folder = self.root / alias
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def find_current(self, alias: str, revision: str, export: dict[str, Any]) -> PublishedModel | None:
        """The live model when it already is ``revision`` exported with ``export`` settings."""
        name = self.current_name(alias)
        if name is None:
            return None
        manifest = self.read_manifest(alias, name)
        if manifest is None or manifest.revision != revision or manifest.export_key() != export_key(export):
            return None
        try:
            return self.resolve(alias, verify_hashes=False)
        except ModelNotReady:
            return None

    # --- writing -------------------------------------------------------------------------

    def new_staging(self, alias: str) -> Path:
        """A fresh, empty staging directory for ``alias``."""
        path = self.root / STAGING / f"{alias}.{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        return path

    def clean_staging(self, alias: str) -> list[Path]:
        """Remove leftovers of crashed runs for ``alias`` (call while holding its lock)."""
        removed = []
        staging = self.root / STAGING
        if staging.is_dir():
            for entry in staging.iterdir():
                if entry.name.startswith(f"{alias}."):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        trash = self.root / alias / TRASH
        if trash.exists():
            shutil.rmtree(trash, ignore_errors=True)
        for tmp in (self.root / alias).glob(".CURRENT.*.tmp") if (self.root / alias).is_dir() else []:
            tmp.unlink(missing_ok=True)
        return removed

    def publish(self, staging: Path, manifest: Manifest) -> PublishedModel:
        """Hash the staging files into ``manifest``, move them into place, swap CURRENT.

        Each step is atomic and ordered so that a crash at any point leaves CURRENT naming
        a complete revision (the old or the new one) or absent.
        """
        files: dict[str, FileEntry] = {}
        for file in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = file.relative_to(staging).as_posix()
            if rel == MANIFEST:
                continue
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
            files[rel] = FileEntry(size=file.stat().st_size, sha256=sha256_file(file))
        manifest = manifest.model_copy(update={"files": files})
        atomic_write_text(staging / MANIFEST, manifest.model_dump_json(indent=2))
        _fsync_dir(staging)

        alias_dir = self.root / manifest.alias
        alias_dir.mkdir(parents=True, exist_ok=True)
        name = self._free_name(alias_dir, manifest)
        os.rename(staging, alias_dir / name)
        _fsync_dir(alias_dir)
        self._swap_current(alias_dir, name)
        return self.resolve(manifest.alias, verify_hashes=False)

    def _free_name(self, alias_dir: Path, manifest: Manifest) -> str:
        """The directory name for a new revision, clearing a stale one of the same name.

        ``<revision>`` when free, else ``<revision>.<export key>`` (other export settings
        live under the plain name). A non-live directory in the way — left by a run that
        crashed between moving it into place and swapping CURRENT — is retired; the live
        one never is (if it is corrupt, the new copy gets a suffixed name instead).
        """
        live = self.current_name(alias_dir.name)
        candidates = [manifest.revision]
        existing = self.read_manifest(alias_dir.name, manifest.revision)
        if (alias_dir / manifest.revision).exists() and (
            existing is None or existing.export_key() != manifest.export_key()
        ):
            candidates = [f"{manifest.revision}.{manifest.export_key()}"]
        for name in candidates:
            target = alias_dir / name
            if not target.exists():
                return name
            if name != live:
                self._retire(alias_dir, target)
                return name
        return f"{candidates[0]}.{uuid.uuid4().hex[:8]}"

    def _swap_current(self, alias_dir: Path, name: str) -> None:
        """Point CURRENT at ``name`` (atomically) and start the GC grace of the one it replaces."""
        previous = self.current_name(alias_dir.name)
        atomic_write_text(alias_dir / CURRENT, name + "\n")
        if previous and previous != name and (alias_dir / previous).is_dir():
            # GC counts the grace period from retirement, not from creation: readers that
            # resolved the old revision just before the swap may still be opening its files
            with contextlib.suppress(OSError):
                os.utime(alias_dir / previous)

    def find_published(self, alias: str, revision: str, export: dict[str, Any]) -> str | None:
        """A complete, hash-verified but not live directory of ``revision`` with ``export``
        settings (left by a crash just before the CURRENT swap, or an earlier pin)."""
        live = self.current_name(alias)
        key = export_key(export)
        for name in self.published(alias):
            if name == live:
                continue
            manifest = self.read_manifest(alias, name)
            if manifest is None or manifest.revision != revision or manifest.export_key() != key:
                continue
            try:
                self._verify(alias, self.root / alias / name, manifest, True)
            except ModelNotReady:
                continue
            return name
        return None

    def activate(self, alias: str, name: str) -> PublishedModel:
        """Make the existing revision directory ``name`` live (call while holding the lock)."""
        alias_dir = self.root / alias
        manifest = self.read_manifest(alias, name)
        if manifest is None:
            raise StoreCorrupt(alias, f"cannot activate {name!r}: no readable manifest")
        self._verify(alias, alias_dir / name, manifest, True)
        self._swap_current(alias_dir, name)
        return self.resolve(alias, verify_hashes=False)

    def _retire(self, alias_dir: Path, target: Path) -> None:
        if self.current_name(alias_dir.name) == target.name:
            # never remove the live directory; the caller publishes under another name
            raise FileExistsError(target)
        trash = alias_dir / TRASH / uuid.uuid4().hex
        trash.parent.mkdir(exist_ok=True)
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def gc(self, alias: str, grace_seconds: float, *, now: float | None = None) -> list[str]:
        """Delete revisions that CURRENT does not name, ``grace_seconds`` after they stopped
        being live (their directory mtime, touched when CURRENT moved away from them)."""
        now = time.time() if now is None else now
        live = self.current_name(alias)
        removed = []
        for name in self.published(alias):
            if name == live:
                continue
            path = self.root / alias / name
            if now - path.stat().st_mtime >= grace_seconds:
                self._retire(self.root / alias, path)
                removed.append(name)
        return removed

    def lock(self, alias: str, lease_seconds: float) -> AliasLock:
        """The single-writer lock for ``alias``."""
        return AliasLock(self.root / LOCKS, alias, lease_seconds)


class AliasLock:
    """One writer per alias, across processes and hosts sharing the store.

    The lock is a JSON file (token, pid, host, lease expiry). Every inspection or change
    of it happens under a short ``flock`` on a guard file, which the kernel (or EFS) drops
    when its holder dies, so two processes can never both decide to take a stale lock.
    A lock is stale when its lease has expired or its holder is a dead process on this
    host. Holders call ``check()`` before publishing: if the lock was taken over they stop.
    """

    def __init__(self, folder: Path, alias: str, lease_seconds: float) -> None:
        self.folder = folder
        self.alias = alias
        self.lease_seconds = lease_seconds
        self.path = folder / f"{alias}.lock"
        self.token = uuid.uuid4().hex
        self.held = False

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"{self.alias}.guard").open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def holder(self) -> dict[str, Any] | None:
        """The current lock record, or None."""
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError):
            return None

    @staticmethod
    def is_stale(record: dict[str, Any], now: float | None = None) -> bool:
        """True when the lease expired or the holder is a dead process on this host."""
        now = time.time() if now is None else now
        if float(record.get("expires", 0)) <= now:
            return True
        if record.get("host") == socket.gethostname():
            try:
                os.kill(int(record.get("pid", 0)), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def try_acquire(self) -> bool:
        """Take the lock if free or stale; False if another live writer holds it."""
        with self._guard():
            record = self.holder()
            if record is not None and record.get("token") != self.token and not self.is_stale(record):
                return False
            self._write()
            self.held = True
            return True

    def acquire(self, timeout: float = 0.0, poll: float = 0.5) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; LockHeld names the holder."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                record = self.holder() or {}
                raise LockHeld(
                    f"Another warmup (pid {record.get('pid')} on {record.get('host')}) is writing "
                    f"{self.alias!r}; its lease ends at {record.get('expires')}",
                    holder=record,
                )
            time.sleep(poll)

    def _write(self) -> None:
        record = {
            "token": self.token,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "acquired": time.time(),
            "expires": time.time() + self.lease_seconds,
        }
        atomic_write_text(self.path, json.dumps(record))

    def check(self) -> None:
        """Raise LockHeld if this process no longer holds the lock (it was taken over)."""
        with self._guard():
            record = self.holder()
            if record is None or record.get("token") != self.token:
                self.held = False
                raise LockHeld(f"Lost the lock on {self.alias!r}: another warmup took it over")

    def renew(self) -> None:
        """Extend the lease (long steps call this between phases)."""
        with self._guard():
            record = self.holder()
            if record is None or record.get("token") != self.token:
                self.held = False
                raise LockHeld(f"Lost the lock on {self.alias!r}: another warmup took it over")
            self._write()

    def release(self) -> None:
        """Give the lock up if still ours."""
        with self._guard():
            record = self.holder()
            if record is not None and record.get("token") == self.token:
                self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> AliasLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
