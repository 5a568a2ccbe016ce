"""The QueryVectors fake follows S3 Vectors' documented semantics (in-process, moto's mock_aws)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from hflambda.s3vectors_fake import QueryError, evaluate_filter, install

META = {"genre": "drama", "year": 2020, "tags": ["a", "b"], "ok": True}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"genre": "drama"}, True),
        ({"genre": {"$eq": "comedy"}}, False),
        ({"genre": {"$ne": "comedy"}}, True),
        ({"year": {"$gt": 2019}}, True),
        ({"year": {"$gte": 2020, "$lt": 2021}}, True),
        ({"year": {"$lte": 2019}}, False),
        ({"genre": {"$in": ["x", "drama"]}}, True),
        ({"genre": {"$nin": ["x", "drama"]}}, False),
        ({"tags": "b"}, True),  # $eq on a list matches any element
        ({"tags": {"$in": ["z", "a"]}}, True),
        ({"missing": {"$exists": False}}, True),
        ({"genre": {"$exists": True}}, True),
        ({"ok": True}, True),
        ({"ok": 1}, False),  # booleans are not numbers
        ({"$and": [{"genre": "drama"}, {"year": 2020}]}, True),
        ({"$or": [{"genre": "comedy"}, {"year": 1999}]}, False),
        ({"genre": "drama", "year": 1999}, False),  # keys of one object are ANDed
        ({"missing": {"$ne": "x"}}, True),
    ],
)
def test_filter_operators(flt: dict[str, Any], expected: bool) -> None:
    assert evaluate_filter(flt, META) is expected


@pytest.mark.parametrize(
    "flt",
    [
        {},
        {"$and": []},
        {"genre": {"$in": []}},
        {"year": {"$gt": "x"}},
        {"genre": {"$regex": "d"}},
        {"$not": {}},
        {"text": "x"},
    ],
)
def test_invalid_filters_are_refused(flt: dict[str, Any]) -> None:
    with pytest.raises(QueryError):
        evaluate_filter(flt, META, {"text"})


@pytest.fixture
def client() -> Iterator[Any]:
    from moto import mock_aws

    install()
    with mock_aws():
        s3v = boto3.client(
            "s3vectors", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )
        s3v.create_vector_bucket(vectorBucketName="vbk")
        for metric in ("cosine", "euclidean"):
            s3v.create_index(
                vectorBucketName="vbk",
                indexName=metric,
                dataType="float32",
                dimension=2,
                distanceMetric=metric,
                metadataConfiguration={"nonFilterableMetadataKeys": ["text"]},
            )
            s3v.put_vectors(
                vectorBucketName="vbk",
                indexName=metric,
                vectors=[
                    {
                        "key": "east",
                        "data": {"float32": [1.0, 0.0]},
                        "metadata": {"side": "e", "text": "far east"},
                    },
                    {
                        "key": "north",
                        "data": {"float32": [0.0, 2.0]},
                        "metadata": {"side": "n", "text": "up"},
                    },
                    {
                        "key": "northeast",
                        "data": {"float32": [3.0, 3.0]},
                        "metadata": {"side": "e", "text": "ne"},
                    },
                ],
            )
        yield s3v


def query(client: Any, index: str, **options: Any) -> Any:
    return client.query_vectors(
        vectorBucketName="vbk", indexName=index, returnDistance=True, returnMetadata=True, **options
    )


def test_cosine_and_euclidean_rank_ascending_by_distance(client: Any) -> None:
    cosine = query(client, "cosine", topK=3, queryVector={"float32": [1.0, 0.1]})
    assert [v["key"] for v in cosine["vectors"]] == ["east", "northeast", "north"] and cosine[
        "distanceMetric"
    ] == "cosine"
    assert cosine["vectors"][0]["distance"] == pytest.approx(1 - 1 / (1.01**0.5), abs=1e-6)
    euclid = query(client, "euclidean", topK=2, queryVector={"float32": [0.0, 1.5]})
    assert [v["key"] for v in euclid["vectors"]] == ["north", "east"]
    assert euclid["vectors"][0]["distance"] == pytest.approx(0.5, abs=1e-6)


def test_filter_metadata_and_top_k(client: Any) -> None:
    hits = query(client, "cosine", topK=1, queryVector={"float32": [0.0, 1.0]}, filter={"side": "e"})[
        "vectors"
    ]
    assert [h["key"] for h in hits] == ["northeast"] and hits[0]["metadata"] == {"side": "e", "text": "ne"}


@pytest.mark.parametrize(
    "options",
    [
        {"topK": 101, "queryVector": {"float32": [1.0, 0.0]}},
        {"topK": 3, "queryVector": {"float32": [1.0, 0.0, 0.0]}},
        {"topK": 3, "queryVector": {"float32": [1.0, 0.0]}, "filter": {"text": "up"}},
        {"topK": 3, "queryVector": {"float32": [1.0, 0.0]}, "filter": {"side": {"$in": []}}},
    ],
    ids=["top-k-over-100", "wrong-dimension", "non-filterable-key", "empty-in"],
)
def test_invalid_queries_are_400_validation_errors(client: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as caught:
        query(client, "cosine", **options)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_put_vectors_enforces_the_filterable_metadata_limit(client: Any) -> None:
    big = {"key": "big", "data": {"float32": [1.0, 1.0]}, "metadata": {"side": "x" * 2100}}
    with pytest.raises(ClientError):
        client.put_vectors(vectorBucketName="vbk", indexName="cosine", vectors=[big])
    fine = {"key": "big", "data": {"float32": [1.0, 1.0]}, "metadata": {"side": "x", "text": "y" * 30000}}
    client.put_vectors(
        vectorBucketName="vbk", indexName="cosine", vectors=[fine]
    )  # non-filterable may be large
