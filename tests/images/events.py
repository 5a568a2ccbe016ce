"""AWS-shaped events, as the services send them to a function."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


def http_api(
    method: str,
    path: str,
    *,
    body: Any = None,
    claims: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """API Gateway HTTP API payload format 2.0; JWT authorizer claims arrive as strings."""
    now = int(time.time())
    all_headers = {
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": "image-test",
        "x-forwarded-proto": "https",
        **({"content-type": "application/json"} if body is not None else {}),
        **(headers or {}),
    }
    raw = json.dumps(body) if body is not None else None
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "domainName": all_headers["host"],
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "image-test",
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": now * 1000,
        },
        "isBase64Encoded": base64_body,
    }
    if claims is not None:
        # API Gateway passes every claim as a string (numbers too; lists as "[a b]")
        event["requestContext"]["authorizer"] = {
            "jwt": {"claims": {k: str(v) for k, v in claims.items()}, "scopes": None}
        }
    if raw is not None:
        event["body"] = base64.b64encode(raw.encode()).decode() if base64_body else raw
    return event


def jwt_claims(sub: str, *, issuer: str, audience: str) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer, "sub": sub, "aud": audience, "iat": now, "exp": now + 600, "sid": "sess_1"}


def sqs_record(body: str, *, receive_count: int = 1) -> dict[str, Any]:
    now = str(int(time.time() * 1000))
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "AQEB" + uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now,
            "SenderId": "AROAEXAMPLE:predict",
            "ApproximateFirstReceiveTimestamp": now,
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:hflambda-index",
        "awsRegion": REGION,
    }


def sqs_batch(*bodies: str) -> dict[str, Any]:
    return {"Records": [sqs_record(b) for b in bodies]}


def schedule() -> dict[str, Any]:
    """The EventBridge scheduled event (the warmup schedule)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/hflambda-warmup"],
        "detail": {},
    }


def after_deploy_trigger() -> dict[str, Any]:
    """The CDK trigger's invocation after a deploy: an empty payload."""
    return {}
