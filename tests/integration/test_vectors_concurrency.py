"""32 concurrent writer processes on the AWS vector backend (moto server + the QueryVectors
fake): overlapping documents, updates, deletes, duplicate deliveries, and writers killed
between their vector write and their catalogue write, whose batches are then redelivered.
After the drain every document is searchable exactly once with its newest text, deleted
ones are gone, and the index holds exactly the newest version's vectors (issue 13, part 2).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hflambda.messages import version_key
from hflambda.settings import Settings
from hflambda.vectors import open_vector_store
from hflambda.vectors.aws import S3VectorsStore
from tests.fakes.vector_writer import SPACE, chunks_of, text_of, vector

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRITERS = 32
KILLED = 8  # writers that die mid-batch
BATCH = 8


def messages(rng: random.Random) -> list[dict[str, Any]]:
    """Per document 2-6 versions (distinct ts), a fifth of them deletes, then 25% duplicated."""
    out = []
    for user in ("alice", "bob"):
        for d in range(30):
            for ts in rng.sample(range(1, 2000), rng.randint(2, 6)):
                out.append(
                    {
                        "user": user,
                        "doc": f"doc{d}",
                        "ts": ts,
                        "op": "delete" if rng.random() < 0.2 else "upsert",
                    }
                )
    out += rng.sample(out, len(out) // 4)  # at-least-once delivery: duplicates
    rng.shuffle(out)
    return out


def newest(all_messages: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    def key(m: dict[str, Any]) -> str:
        return version_key(m["ts"], m["op"], text_of(m["doc"], m["ts"]) if m["op"] == "upsert" else "")

    best: dict[tuple[str, str], dict[str, Any]] = {}
    for m in all_messages:
        k = (m["user"], m["doc"])
        if k not in best or key(m) > key(best[k]):
            best[k] = m
    return best


def run_writers(
    plans: list[list[list[dict[str, Any]]]], crash: dict[int, int], env: dict[str, str], tmp: Path
) -> list[set[int]]:
    """Start one process per plan at once; returns the acknowledged batch numbers of each."""
    procs = []
    for i, plan in enumerate(plans):
        path = tmp / f"plan-{i}.json"
        path.write_text(json.dumps(plan))
        argv = [sys.executable, "-m", "tests.fakes.vector_writer", str(path)]
        if i in crash:
            argv += ["--crash-at", str(crash[i])]
        procs.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    acked = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        if i not in crash:
            assert proc.returncode == 0, err[-2000:]
        acked.append({int(line.split()[1]) for line in out.splitlines() if line.startswith("ack ")})
    return acked


def test_32_writers_with_crashes_and_redeliveries_converge(
    aws_vectors: dict[str, str], tmp_path: Path
) -> None:
    rng = random.Random(13)
    sent = messages(rng)
    batches = [sent[i : i + BATCH] for i in range(0, len(sent), BATCH)]
    plans: list[list[list[dict[str, Any]]]] = [[] for _ in range(WRITERS)]
    for number, batch in enumerate(batches):
        plans[number % WRITERS].append(batch)
    crash = {w: rng.randint(1, 4) for w in rng.sample(range(WRITERS), KILLED)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["layers", "."])}
    started = time.perf_counter()
    acked = run_writers(plans, crash, env, tmp_path)
    first_pass = time.perf_counter() - started
    assert sum(1 for w in crash if len(acked[w]) < len(plans[w])) >= KILLED // 2, "the crashes happened"
    # SQS redelivers every batch that was never acknowledged (to any writer, in any order)
    redeliver = [batch for w, plan in enumerate(plans) for n, batch in enumerate(plan) if n not in acked[w]]
    rng.shuffle(redeliver)
    again = run_writers([redeliver[i::4] for i in range(4)], {}, env, tmp_path)
    assert all(len(a) == len(p) for a, p in zip(again, [redeliver[i::4] for i in range(4)], strict=True))

    store = open_vector_store(Settings())
    assert isinstance(store, S3VectorsStore)
    final = newest(sent)
    live = {k: m for k, m in final.items() if m["op"] == "upsert"}
    assert live and len(live) < len(final), "the plan has both live and deleted documents"
    # the index holds exactly the newest version's vectors of each live document
    stored: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in store._list_vectors():
        stored.setdefault((v["metadata"]["u"], v["metadata"]["d"]), []).append(v["metadata"])
    assert set(stored) == set(live), "deleted documents left no vectors, live ones all have theirs"
    for key, m in live.items():
        version = version_key(m["ts"], "upsert", text_of(m["doc"], m["ts"]))
        assert sorted(x["c"] for x in stored[key]) == list(range(chunks_of(m["ts"]))), key
        assert {x["v"] for x in stored[key]} == {version}, key
    assert store.count_chunks(SPACE) == sum(chunks_of(m["ts"]) for m in live.values())
    # every live document is found exactly once, with its newest text; deleted ones never
    for (user, doc), m in final.items():
        hits = store.search(user, vector(doc, m["ts"], 0), space=SPACE, top_k=5)
        ids = [h.document_id for h in hits]
        assert len(ids) == len(set(ids))
        if m["op"] == "upsert":
            assert (
                ids[0] == doc
                and hits[0].text == f"{text_of(doc, m['ts'])} #0"
                and hits[0].metadata == {"ts": m["ts"]}
            )
            stored_doc = store.get_document(user, doc)
            assert stored_doc is not None and stored_doc.text == text_of(doc, m["ts"])
        else:
            assert doc not in ids
            tomb = store.get_document(user, doc)
            assert tomb is not None and tomb.deleted
    print(
        f"32 writers: {len(sent)} messages in {len(batches)} batches, first pass {first_pass:.1f} s, {len(redeliver)} batches redelivered"
    )
