"""A tiny Lambda SQS handler for poller process tests: appends each body to $SQS_HANDLER_OUT."""

from __future__ import annotations

import os
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Record every body; fail the records whose body is ``fail``."""
    with open(os.environ["SQS_HANDLER_OUT"], "a", encoding="utf-8") as out:
        for record in event["Records"]:
            out.write(record["body"] + "\n")
    return {
        "batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"
        ]
    }
