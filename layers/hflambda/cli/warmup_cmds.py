"""``hflambda warmup``: run the warmup job locally with rich progress and a summary table."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from hflambda.cli.app import app
from hflambda.errors import RegistryError
from hflambda.settings import get_settings
from hflambda.warmup.types import ModelResult, ModelStatus, WarmupResult

STYLE = {
    ModelStatus.PUBLISHED: "green",
    ModelStatus.CURRENT: "cyan",
    ModelStatus.CHECKED: "cyan",
    ModelStatus.FAILED: "red",
    ModelStatus.DEFERRED: "yellow",
    ModelStatus.LOCKED: "yellow",
}


class RichObserver:
    """Draws one progress line per model: fetch → export → publish."""

    STEPS = ("fetch", "export", "publish")

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.downloads: dict[str, TaskID] = {}

    def model_started(self, alias: str, total: int) -> None:
        self.tasks[alias] = self.progress.add_task(f"{alias}: checking", total=len(self.STEPS) + 1)

    def step(self, alias: str, name: str) -> None:
        task = self.tasks[alias]
        self.progress.update(task, description=f"{alias}: {name}", completed=self.STEPS.index(name) + 1)

    def download(self, alias: str, done: int, total: int) -> None:
        """A byte bar under the model's line while its source files are fetched."""
        text = f"{alias}: download {done / 1e6:.1f}/{total / 1e6:.1f} MB"
        task = self.downloads.get(alias)
        if task is None:
            self.downloads[alias] = self.progress.add_task(text, total=max(total, 1), completed=done)
        else:
            self.progress.update(task, description=text, total=max(total, 1), completed=done)

    def model_done(self, result: ModelResult) -> None:
        download = self.downloads.pop(result.alias, None)
        if download is not None:
            self.progress.remove_task(download)
        task = self.tasks.get(result.alias)
        if task is not None:
            self.progress.update(
                task, description=f"{result.alias}: {result.status.value}", completed=len(self.STEPS) + 1
            )


PARITY_KEYS = ("min_cosine", "mean_cosine", "argmax_agreement", "max_prob_diff", "logits_min_cosine")


def _parity_summary(parity: dict[str, object]) -> str:
    shown = {k: parity[k] for k in PARITY_KEYS if k in parity}
    return "parity " + json.dumps(shown) if shown else ""


def summary_table(result: WarmupResult) -> Table:
    """One row per model: status, revision, time, reason."""
    table = Table(title=f"warmup {result.run_id[:8]}")
    for column in ("model", "status", "revision", "seconds", "detail"):
        table.add_column(column, overflow="fold")
    for m in result.models:
        style = STYLE.get(m.status, "")
        seconds = m.timings.get("total_s")
        detail = m.reason or _parity_summary(m.parity)
        table.add_row(
            m.alias,
            f"[{style}]{m.status.value}[/{style}]",
            (m.live_revision or m.revision or "-")[:12],
            f"{seconds:.1f}" if seconds else "-",
            detail,
        )
    return table


@app.command()
def warmup(
    models: Annotated[list[str] | None, typer.Argument(help="Aliases to warm (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Download, export, check and publish every registry model into HFLAMBDA_MODEL_STORE."""
    from hflambda.warmup.service import warmup_from_settings

    settings = get_settings()
    console = Console(stderr=as_json, soft_wrap=True)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=as_json,
        ) as progress:
            result = warmup_from_settings(settings, aliases=models or None, observer=RichObserver(progress))
    except RegistryError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        console.print(summary_table(result))
        console.print(f"store: {settings.model_store.resolve()}")
    if not result.ok:
        raise typer.Exit(1)
