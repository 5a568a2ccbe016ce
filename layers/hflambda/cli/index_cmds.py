"""``hflambda dlq list|redrive``, ``hflambda reindex``, ``hflambda vectors maintain``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hflambda.cli.app import app
from hflambda.errors import HflambdaError
from hflambda.settings import Settings, get_settings

dlq_app = typer.Typer(
    help="See why index messages were parked in the DLQ, and move them back.", no_args_is_help=True
)
vectors_app = typer.Typer(help="Vector store operations.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(vectors_app, name="vectors")

QueueOpt = Annotated[
    str | None, typer.Option("--queue-url", help="Index queue URL (default: HFLAMBDA_INDEX_QUEUE_URL).")
]
DlqOpt = Annotated[
    str | None,
    typer.Option("--dlq-url", help="DLQ URL (default: HFLAMBDA_DLQ_URL, else the queue's RedrivePolicy)."),
]


def _dead_letters(settings: Settings, queue_url: str | None, dlq_url: str | None, *, with_store: bool) -> Any:
    import boto3

    from hflambda.dlq import DeadLetters
    from hflambda.vectors import open_failure_ledger

    queue = queue_url or settings.index_queue_url
    if not queue:
        typer.echo("no index queue: pass --queue-url or set HFLAMBDA_INDEX_QUEUE_URL", err=True)
        raise typer.Exit(2)
    store = open_failure_ledger(settings) if with_store else None
    try:
        return DeadLetters(boto3.client("sqs"), queue, dlq_url=dlq_url or settings.dlq_url, store=store)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@dlq_app.command("list")
def dlq_list(
    queue_url: QueueOpt = None,
    dlq_url: DlqOpt = None,
    limit: Annotated[int | None, typer.Option(help="Show at most this many messages.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per message on stdout.")] = False,
) -> None:
    """Parked messages with the reason each failed (they stay in the DLQ)."""
    letters = _dead_letters(get_settings(), queue_url, dlq_url, with_store=True).peek(limit)
    if as_json:
        for letter in letters:
            typer.echo(
                json.dumps(
                    {
                        "message_id": letter.message_id,
                        "sent_at": letter.sent_at.isoformat() if letter.sent_at else None,
                        "receive_count": letter.receive_count,
                        "summary": letter.summary,
                        "reason": letter.reason,
                        "reason_source": letter.reason_source,
                        "body": letter.body,
                    }
                )
            )
        return
    console = Console(soft_wrap=True)
    if not letters:
        console.print("[green]the DLQ is empty[/green]")
        return
    table = Table(title=f"{len(letters)} parked message(s)")
    for column in ("message id", "sent", "receives", "message", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            letter.message_id,
            letter.sent_at.strftime("%Y-%m-%d %H:%M:%S") if letter.sent_at else "-",
            str(letter.receive_count),
            letter.summary,
            letter.reason,
        )
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    queue_url: QueueOpt = None,
    dlq_url: DlqOpt = None,
    limit: Annotated[int | None, typer.Option(help="Move at most this many messages.")] = None,
) -> None:
    """Move parked messages back to the index queue (after fixing what made them fail)."""
    result = _dead_letters(get_settings(), queue_url, dlq_url, with_store=False).redrive(limit)
    console = Console()
    console.print(
        f"moved {result.moved} message(s) back to the queue"
        + (f", {result.failed} failed" if result.failed else "")
    )
    if result.failed:
        raise typer.Exit(1)


@app.command()
def reindex(
    batch_size: Annotated[int, typer.Option(help="Documents embedded per page.")] = 64,
) -> None:
    """Re-embed stored text with the live embedding model revision (after a model change)."""
    from hflambda.indexing import Indexer

    console = Console()
    indexer = Indexer.from_settings(get_settings())
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("re-embedding", total=None)
            counts = {"documents": 0, "chunks": 0}

            def step(documents: int, chunks: int) -> None:
                counts["documents"] += documents
                counts["chunks"] += chunks
                progress.update(
                    task,
                    description=f"re-embedded {counts['documents']} document(s), {counts['chunks']} chunk(s)",
                )

            report = indexer.reindex(batch_size=batch_size, progress=step)
    except HflambdaError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(
        f"model {report.space.alias} revision {report.space.revision}: {report.documents} document(s), "
        f"{report.chunks} chunk(s) re-embedded; {report.superseded} changed meanwhile (left to the index function)"
    )
    for (user_id, document_id), reason in report.failed.items():
        console.print(f"[red]{user_id}/{document_id}: {reason}[/red]")
    if report.failed:
        raise typer.Exit(1)


@vectors_app.command("maintain")
def vectors_maintain() -> None:
    """Compact tables, create or refresh indexes, remove old versions and expired failure records."""
    from hflambda.vectors import maintain_vectors

    report = maintain_vectors(get_settings())
    console = Console()
    console.print(
        f"rows {report.rows}; indexes created {report.indexes_created or 'none'}; "
        f"optimized {report.optimized}; failure records expired {report.failures_expired}; {report.seconds:.1f} s"
    )
