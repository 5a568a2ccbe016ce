"""The writer side of the store: one writer per alias, stale locks taken over safely, GC that
never touches the live revision, and recovery of revisions left by a crashed publish."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hflambda.errors import LockHeld, StoreCorrupt
from hflambda.store import Manifest, ModelStore


def publish(
    store: ModelStore, revision: str, payload: bytes = b"weights", *, export: dict[str, object] | None = None
) -> str:
    staging = store.new_staging("m")
    (staging / "model.onnx").write_bytes(payload)
    manifest = Manifest(
        alias="m",
        repo="org/m",
        revision=revision,
        source="hf://org/m",
        task="embeddings",
        export=export or {"q": None},
    )
    return store.publish(staging, manifest).path.name


# --- locks ----------------------------------------------------------------------------------


def test_one_writer_until_release(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first, second = store.lock("m", 60), store.lock("m", 60)
    assert first.try_acquire()
    assert not second.try_acquire()
    with pytest.raises(LockHeld, match="Another warmup"):
        second.acquire(timeout=0.2, poll=0.05)
    second.release()  # not its lock: nothing happens
    assert first.holder() is not None and first.holder()["token"] == first.token  # type: ignore[index]
    first.release()
    assert second.try_acquire()
    second.release()
    assert not (tmp_path / ".locks" / "m.lock").exists()


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    old = store.lock("m", 0.2)
    assert old.try_acquire()
    time.sleep(0.3)
    new = store.lock("m", 60)
    assert new.try_acquire()  # the lease ran out
    with pytest.raises(LockHeld, match="Lost the lock"):
        old.check()  # so the old writer must not publish
    with pytest.raises(LockHeld):
        old.renew()
    old.release()  # must not release the new holder's lock
    assert new.holder()["token"] == new.token  # type: ignore[index]
    new.check()


def test_dead_holder_on_this_host_is_stale(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from hflambda.store import ModelStore; ModelStore({str(tmp_path)!r}).lock('m', 3600).try_acquire()",
        ],
        check=True,
    )
    assert child.returncode == 0
    holder = store.lock("m", 60).holder()
    assert holder is not None and holder["pid"] != os.getpid()  # left behind by a dead process
    assert store.lock("m", 60).try_acquire()


def test_live_holder_is_not_stale(tmp_path: Path) -> None:
    from hflambda.store import AliasLock

    record = {"pid": os.getpid(), "host": os.uname().nodename, "expires": time.time() + 60}
    assert not AliasLock.is_stale(record)
    assert AliasLock.is_stale({**record, "expires": time.time() - 1})


# --- garbage collection ---------------------------------------------------------------------


def test_gc_keeps_the_live_revision_and_counts_grace_from_retirement(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "r1", b"one")
    old = time.time() - 10 * 86400
    os.utime(tmp_path / "m" / "r1", (old, old))  # r1 was created long ago ...
    publish(store, "r2", b"two")  # ... but stops being live only now
    assert store.gc("m", 3600) == []  # within the grace period since retirement
    assert store.gc("m", 3600, now=time.time() + 3601) == ["r1"]
    assert store.published("m") == ["r2"]
    assert store.gc("m", 0, now=time.time() + 10**6) == []  # never the live one
    assert store.resolve("m").revision == "r2"
    assert not list((tmp_path / "m" / ".trash").glob("*"))


# --- recovery of crashed publishes ----------------------------------------------------------


def test_complete_revision_left_before_the_pointer_swap_is_activated(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "r1", b"one")
    publish(store, "r2", b"two")
    (tmp_path / "m" / "CURRENT").write_text("r1\n")  # as if the run died before swapping CURRENT
    assert store.find_current("m", "r2", {"q": None}) is None
    assert store.find_published("m", "r2", {"q": None}) == "r2"
    assert store.find_published("m", "r2", {"q": "int8"}) is None  # other export settings
    assert store.activate("m", "r2").revision == "r2"
    assert store.current_name("m") == "r2"


def test_corrupt_leftover_is_not_activated(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "r1", b"one")
    publish(store, "r2", b"two")
    (tmp_path / "m" / "CURRENT").write_text("r1\n")
    (tmp_path / "m" / "r2" / "model.onnx").write_bytes(b"TWO")  # same size, other bytes
    assert store.find_published("m", "r2", {"q": None}) is None
    with pytest.raises(StoreCorrupt, match="hash mismatch"):
        store.activate("m", "r2")
    assert store.current_name("m") == "r1"
    assert publish(store, "r2", b"two") == "r2"  # the bad leftover is replaced, not reused
    assert store.resolve("m", verify_hashes=True).revision == "r2"


def test_republishing_over_a_corrupt_live_revision_never_removes_it_first(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "r1", b"one")
    (tmp_path / "m" / "r1" / "model.onnx").write_bytes(b"on")  # truncated live file
    with pytest.raises(StoreCorrupt):
        ModelStore(tmp_path).resolve("m")
    name = publish(store, "r1", b"one")
    assert name.startswith("r1.") and name != "r1"  # published beside it, then swapped
    assert store.resolve("m", verify_hashes=True).path.name == name


def test_clean_staging_removes_what_a_crash_left(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "r1")
    leftover = store.new_staging("m")
    (leftover / "partial.bin").write_bytes(b"x")
    other = store.new_staging("other")
    (tmp_path / "m" / ".CURRENT.dead.tmp").write_text("r2\n")
    (tmp_path / "m" / ".trash" / "x").mkdir(parents=True)
    removed = store.clean_staging("m")
    assert removed == [leftover]
    assert other.exists()  # another alias's work is not ours to clean
    assert not list((tmp_path / "m").glob(".CURRENT.*.tmp")) and not (tmp_path / "m" / ".trash").exists()
    assert store.resolve("m").revision == "r1"
