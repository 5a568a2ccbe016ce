"""QueryVectors for moto's s3vectors backend (dev-only: tests, ``hflambda dev --vectors aws``, the rehearsal).

moto 5.2.5 implements vector buckets, indexes and Put/Get/List/DeleteVectors but not
QueryVectors. :func:`install` adds it, following the documented semantics of Amazon S3
Vectors:

- exact nearest neighbours by the index's metric (``cosine``: distance ``1 - cos``;
  ``euclidean``: L2), ascending distance; ``topK`` from 1 to 100;
- the query vector must have the index's dimension (400 otherwise);
- metadata filters: ``{"key": value}`` (``$eq``), ``$eq $ne $gt $gte $lt $lte $in $nin
  $exists $and $or``; ``$eq``/``$in`` on a list-valued key match when any element matches;
  a filter naming a non-filterable key (declared with ``metadataConfiguration`` at
  ``CreateIndex``, which this module makes moto remember) is a 400 ValidationException;
- PutVectors: ≤ 500 vectors, filterable metadata ≤ 2 KB and all metadata ≤ 40 KB per vector.

Use it in-process (``install()`` before or inside ``moto.mock_aws``) or as a server other
processes and containers reach over HTTP: :func:`start_server`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["QueryError", "evaluate_filter", "install", "query", "start_server"]

TOP_K_MAX = 100
PUT_MAX = 500
FILTERABLE_BYTES = 2048
METADATA_BYTES = 40 * 1024
_COMPARE = {"$gt", "$gte", "$lt", "$lte"}
_OPERATORS = {"$eq", "$ne", "$in", "$nin", "$exists", *_COMPARE}
_installed = False


class QueryError(ValueError):
    """An invalid query or filter (S3 Vectors answers 400 ValidationException)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_primitive(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _equal(stored: Any, value: Any) -> bool:
    if isinstance(stored, list):
        return any(_equal(item, value) for item in stored)
    if isinstance(stored, bool) or isinstance(value, bool):
        return isinstance(stored, bool) and isinstance(value, bool) and stored == value
    return bool(stored == value)


def _check_key(key: str, non_filterable: set[str]) -> None:
    if key.startswith("$"):
        raise QueryError(f"unknown logical operator {key!r}")
    if key in non_filterable:
        raise QueryError(
            f"metadata key {key!r} is non-filterable in this index and cannot be used in a filter"
        )


def _operator(key: str, op: str, operand: Any, metadata: Mapping[str, Any]) -> bool:
    present = key in metadata
    stored = metadata.get(key)
    if op == "$exists":
        if not isinstance(operand, bool):
            raise QueryError("$exists takes a boolean")
        return present == operand
    if op in ("$eq", "$ne"):
        if not _is_primitive(operand):
            raise QueryError(f"{op} takes a string, number or boolean")
        equal = present and _equal(stored, operand)
        return equal if op == "$eq" else not equal
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand or not all(_is_primitive(v) for v in operand):
            raise QueryError(f"{op} takes a non-empty array of primitives")
        hit = present and any(_equal(stored, v) for v in operand)
        return hit if op == "$in" else not hit
    if op in _COMPARE:
        if not _is_number(operand):
            raise QueryError(f"{op} takes a number")
        if not present:
            return False
        values = stored if isinstance(stored, list) else [stored]
        compare = {
            "$gt": lambda a: a > operand,
            "$gte": lambda a: a >= operand,
            "$lt": lambda a: a < operand,
            "$lte": lambda a: a <= operand,
        }[op]
        return any(_is_number(v) and compare(v) for v in values)
    raise QueryError(f"unknown operator {op!r}")


def evaluate_filter(flt: Any, metadata: Mapping[str, Any], non_filterable: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
    """Whether ``metadata`` matches the S3 Vectors filter ``flt`` (QueryError when invalid)."""
    if not isinstance(flt, dict) or not flt:
        raise QueryError("a filter is a non-empty JSON object")
    results = []
    for key, condition in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise QueryError(f"{key} takes a non-empty array of filters")
            parts = [evaluate_filter(c, metadata, non_filterable) for c in condition]
            results.append(all(parts) if key == "$and" else any(parts))
            continue
        _check_key(key, non_filterable)
        if isinstance(condition, dict):
            if not condition:
                raise QueryError(f"the condition on {key!r} is empty")
            for op, operand in condition.items():
                if op not in _OPERATORS:
                    raise QueryError(f"unknown operator {op!r}")
                results.append(_operator(key, op, operand, metadata))
        else:
            results.append(_operator(key, "$eq", condition, metadata))
    return all(results)


def _validate_filter(flt: Any, non_filterable: set[str]) -> None:
    evaluate_filter(flt, {}, non_filterable)  # shape and key checks, independent of any vector


def query(index: Any, *, top_k: Any, vector: Any, flt: Any, metadata: bool, distance: bool) -> dict[str, Any]:
    """QueryVectors over a moto ``Index``: the response body as S3 Vectors returns it."""
    if not isinstance(top_k, int) or not 1 <= top_k <= TOP_K_MAX:
        raise QueryError(f"topK must be between 1 and {TOP_K_MAX}, got {top_k!r}")
    data = (vector or {}).get("float32")
    if not isinstance(data, list) or len(data) != index.dimension:
        got = len(data) if isinstance(data, list) else 0
        raise QueryError(f"query vector has dimension {got}, the index has {index.dimension}")
    q = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(q)):
        raise QueryError("query vector values must be finite")
    non_filterable = set(getattr(index, "non_filterable_keys", []))
    if flt is not None:
        _validate_filter(flt, non_filterable)
    candidates = [
        v
        for v in list(index.vectors.values())
        if flt is None or evaluate_filter(flt, v.metadata or {}, non_filterable)
    ]
    if not candidates:
        return {"vectors": [], "distanceMetric": index.distance_metric}
    matrix = np.asarray([v.data["float32"] for v in candidates], dtype=np.float32)
    if index.distance_metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(q)), 1e-12)
        distances = 1.0 - (matrix @ q) / np.clip(norms, 1e-12, None)
    else:
        distances = np.linalg.norm(matrix - q, axis=1)
    order = np.argsort(distances, kind="stable")[:top_k]
    out = []
    for i in order:
        row: dict[str, Any] = {"key": candidates[i].key}
        if metadata:
            row["metadata"] = candidates[i].metadata or {}
        if distance:
            row["distance"] = float(distances[i])
        out.append(row)
    return {"vectors": out, "distanceMetric": index.distance_metric}


def _metadata_bytes(metadata: Mapping[str, Any], keys: set[str] | None = None) -> int:
    part = {k: v for k, v in metadata.items() if keys is None or k in keys}
    return len(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode("utf-8")) if part else 0


def install() -> None:
    """Teach moto's s3vectors QueryVectors, index metadata configuration and PutVectors limits (idempotent)."""
    global _installed
    if _installed:
        return
    from moto.core.responses import ActionResult
    from moto.s3vectors import responses, urls
    from moto.s3vectors.exceptions import ValidationError

    cls = responses.S3VectorsResponse
    original_create = cls.create_index
    original_put = cls.put_vectors

    def _index(self: Any) -> Any:
        return self.s3vectors_backend.get_index(
            vector_bucket_name=self._get_param("vectorBucketName"),
            index_name=self._get_param("indexName"),
            index_arn=self._get_param("indexArn"),
        )

    def create_index(self: Any) -> Any:
        answer = original_create(self)
        config = self._get_param("metadataConfiguration") or {}
        keys = list(config.get("nonFilterableMetadataKeys") or [])
        if len(keys) > 10:
            raise ValidationError("at most 10 non-filterable metadata keys per index")
        _index(self).non_filterable_keys = keys
        return answer

    def put_vectors(self: Any) -> Any:
        vectors = self._get_param("vectors") or []
        if not 1 <= len(vectors) <= PUT_MAX:
            raise ValidationError(f"PutVectors takes 1 to {PUT_MAX} vectors, got {len(vectors)}")
        index = _index(self)
        non_filterable = set(getattr(index, "non_filterable_keys", []))
        for vector in vectors:
            meta = vector.get("metadata") or {}
            data = vector.get("data", {}).get("float32") or []
            if not all(isinstance(x, int | float) and math.isfinite(x) for x in data):
                raise ValidationError(f"vector {vector.get('key')!r} has non-finite values")
            filterable = _metadata_bytes(meta, set(meta) - non_filterable)
            if filterable > FILTERABLE_BYTES:
                raise ValidationError(
                    f"vector {vector.get('key')!r}: filterable metadata is {filterable} bytes (limit {FILTERABLE_BYTES})"
                )
            total = _metadata_bytes(meta)
            if total > METADATA_BYTES:
                raise ValidationError(
                    f"vector {vector.get('key')!r}: metadata is {total} bytes (limit {METADATA_BYTES})"
                )
        return original_put(self)

    def query_vectors(self: Any) -> Any:
        index = _index(self)
        try:
            body = query(
                index,
                top_k=self._get_param("topK"),
                vector=self._get_param("queryVector"),
                flt=self._get_param("filter"),
                metadata=self._get_bool_param("returnMetadata", False),
                distance=self._get_bool_param("returnDistance", False),
            )
        except QueryError as exc:
            raise ValidationError(str(exc)) from None
        return ActionResult(body)

    cls.create_index = create_index  # type: ignore[method-assign]
    cls.put_vectors = put_vectors  # type: ignore[method-assign]
    cls.query_vectors = query_vectors  # type: ignore[attr-defined]
    urls.url_paths.setdefault("{0}/QueryVectors$", cls.dispatch)
    _installed = True


def start_server(host: str = "127.0.0.1", port: int = 0) -> tuple[Any, str]:
    """A moto server (every service moto has, plus QueryVectors) on ``host:port`` (0: a free port).

    Returns ``(server, url)``; ``server.stop()`` stops it. Point boto3 at it with
    ``AWS_ENDPOINT_URL=url`` (and any dummy credentials and region).
    """
    import logging
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    install()
    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server, f"http://{host}:{port}"


def main() -> None:
    """``python -m hflambda.s3vectors_fake [--host H] [--port P]``: serve until interrupted.

    Prints ``ready <url>`` once listening (for containers and other processes: bind
    ``--host 0.0.0.0`` or the Docker bridge address to be reachable from them).
    """
    import argparse
    import signal
    import threading

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server, url = start_server(args.host, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"ready {url}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
