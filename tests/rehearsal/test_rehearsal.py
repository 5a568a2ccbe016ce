"""The synthesized stack, run with the three real images under the RIE: a first deploy.

One rehearsal per session (``rehearsal`` fixture): moto with the template's resources (the HF
token secret holds the template's placeholder), an empty model store, the after-deploy
trigger's warmup done. Requests go through the front door built from the template.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.rehearsal.conftest import APP_ORIGIN, REPO_ROOT

pytestmark = pytest.mark.slow


def _call(
    rehearsal: Any, method: str, path: str, *, user: str = "alice", azp: str = APP_ORIGIN, **kwargs: Any
) -> httpx.Response:
    token = rehearsal.token(user, azp=azp)
    headers = {"authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return httpx.request(method, rehearsal.front_door.url + path, headers=headers, timeout=120, **kwargs)


def test_a_first_deploy_with_the_placeholder_secret_warms_and_serves_every_model(rehearsal: Any) -> None:
    (after_deploy,) = [r for r in rehearsal.async_records if r.source == "after-deploy"]
    assert after_deploy.succeeded, after_deploy.attempts[-1].payload[:2000]
    report = after_deploy.attempts[-1].json()
    statuses = {m["alias"]: m["status"] for m in report["models"]}
    assert statuses and all(s in ("published", "current", "checked") for s in statuses.values()), json.dumps(
        report
    )[:3000]
    health = httpx.get(rehearsal.front_door.url + "/health", timeout=60).json()
    assert health["models_ready"] == health["models_total"] == len(statuses)
    models = _call(rehearsal, "GET", "/v1/models").json()["data"]
    assert all(m["ready"] for m in models), models
    embedded = _call(
        rehearsal, "POST", "/v1/embeddings", json={"input": ["hello", "world"], "model": "embed"}
    )
    assert embedded.status_code == 200 and len(embedded.json()["data"][0]["embedding"]) == 384


def test_the_demo_passes_against_the_front_door(rehearsal: Any) -> None:
    alice, bob = rehearsal.token("alice", azp=APP_ORIGIN), rehearsal.token("bob", azp=APP_ORIGIN)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hflambda.cli",
            "demo",
            "--url",
            rehearsal.front_door.url,
            "--token",
            alice,
            "--token",
            bob,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_a_token_with_a_foreign_azp_is_refused_through_the_front_door(rehearsal: Any) -> None:
    """The authorizer cannot check azp (it passes the token); the function refuses it from the claims."""
    refused = _call(rehearsal, "GET", "/v1/models", azp="https://elsewhere.example.com")
    assert refused.status_code == 401
    record = rehearsal.front_door.records[-1]
    assert record.authorizer_error is None, "the gateway's authorizer accepted it; the function refused it"
    assert _call(rehearsal, "GET", "/v1/models").status_code == 200


def test_a_browser_preflight_gets_cors_headers_and_no_401(rehearsal: Any) -> None:
    response = httpx.options(
        rehearsal.front_door.url + "/v1/search",
        headers={
            "origin": APP_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
        timeout=30,
    )
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    actual = _call(
        rehearsal,
        "POST",
        "/v1/search",
        json={"query": "anything", "top_k": 1},
        headers={"origin": APP_ORIGIN},
    )
    assert actual.status_code == 200 and actual.headers["access-control-allow-origin"] == APP_ORIGIN


def test_a_poison_record_alone_reaches_the_dlq(rehearsal: Any) -> None:
    """Three good upserts and one invalid message in one batch: the good ones are indexed and
    deleted, the invalid one is redelivered after the visibility timeout and, past the
    redrive policy's maxReceiveCount, moved to the DLQ by the queue."""
    sqs = rehearsal.moto.client("sqs")
    (mapping,) = rehearsal.mappings
    queue_url = mapping.queue_url
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    dlq_url = next(
        url
        for url in rehearsal.info()["queues"].values()
        if url.endswith(redrive["deadLetterTargetArn"].rsplit(":", 1)[-1])
    )
    user = f"poison-{uuid.uuid4().hex[:8]}"
    good = [
        {
            "v": 1,
            "op": "upsert",
            "user_id": user,
            "document": {"id": f"doc-{i}", "text": f"note {i} about cold starts and queues", "metadata": {}},
        }
        for i in range(3)
    ]
    poison = '{"v": 1, "op": "upsert", "user_id": "' + user + '", "document": "not an object"}'
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "MessageBody": json.dumps(m)} for i, m in enumerate(good)]
        + [{"Id": "poison", "MessageBody": poison}],
    )
    deadline = time.monotonic() + 6 * int(attributes["VisibilityTimeout"]) + 120
    parked: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not parked:
        parked = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=5).get(
            "Messages", []
        )
    assert [m["Body"] for m in parked] == [poison]
    left = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    assert sum(int(v) for v in left["Attributes"].values()) == 0
    found = _call(
        rehearsal, "POST", "/v1/search", user=user, json={"query": "cold starts", "top_k": 10}
    ).json()
    assert {hit["id"] for hit in found["data"]} == {"doc-0", "doc-1", "doc-2"}


def test_a_response_over_the_limit_is_an_error_not_a_hang(rehearsal: Any) -> None:
    """2,048 float embeddings would be a ~16 MB response, over Lambda's 6 MB: refused at once."""
    started = time.monotonic()
    response = _call(rehearsal, "POST", "/v1/embeddings", json={"input": ["word"] * 2048, "model": "embed"})
    assert time.monotonic() - started < 30
    assert response.status_code == 413 and "6 MB" in response.text


def test_the_containers_run_with_the_templates_memory_and_constraints(rehearsal: Any) -> None:
    """What the engine applied to each running environment is what the template declares."""
    seen = 0
    for name, pool in rehearsal.pools.items():
        spec = rehearsal.functions[name]
        for instance in pool._all:
            config = instance.inspect()
            assert config["HostConfig"]["Memory"] == spec.memory_mb * 1024 * 1024
            assert config["HostConfig"]["ReadonlyRootfs"] is True
            assert config["HostConfig"]["Tmpfs"]["/tmp"].startswith(f"rw,exec,size={spec.ephemeral_mb}m")
            assert config["Config"]["User"] == f"{spec.mounts[0].uid}:{spec.mounts[0].gid}"
            mounts = {m["Destination"]: m["RW"] for m in config["Mounts"]}
            assert mounts[spec.mounts[0].local_mount_path] is (not spec.mounts[0].read_only)
            seen += 1
    assert seen >= 2  # predict and warmup at least


def test_warmup_on_command_is_the_schedules_event_and_a_no_op(rehearsal: Any) -> None:
    (record,) = rehearsal.wait_for(rehearsal.warmup(), 900)
    assert record.qualifier == "$LATEST" and record.succeeded
    report = record.attempts[-1].json()
    assert {m["status"] for m in report["models"]} <= {"current", "checked"}
