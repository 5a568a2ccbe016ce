"""Lambda entry point for the index function (SQS event source, ReportBatchItemFailures).

The embedding model loads at import (init), synchronously. Each invocation is indexed as
one batch by the library (validate, per-document limits, chunk, embed and write in waves
within the invocation's remaining time and chunk budget); Powertools' batch
processor then reports exactly the records that failed in ``batchItemFailures``, so SQS
redelivers only those and parks repeat offenders in the DLQ.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from hflambda.indexing import Indexer, IndexRecordFailed, QueueRecord
from hflambda.settings import get_settings
from hflambda.telemetry import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
indexer = Indexer.from_settings(get_settings())
indexer.warm()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Index the batch, then mark its failed records for redelivery."""
    # the invocation's time budget: records that cannot finish before the timeout are
    # reported failed ("deferred") and only they are redelivered
    outcome = indexer.index(
        [QueueRecord.from_sqs(record) for record in event.get("Records", [])],
        remaining=lambda: context.get_remaining_time_in_millis() / 1000,
    )

    def record_handler(record: SQSRecord) -> None:
        reason = outcome.failures.get(record.message_id)
        if reason is not None:
            raise IndexRecordFailed(reason)

    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
