"""``hflambda mirror``: copy a model's pinned Hub snapshot to S3, so production warms from there."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from hflambda.cli.app import app
from hflambda.errors import HflambdaError, ModelNotFound, RegistryError
from hflambda.registry import load_registry
from hflambda.settings import get_settings


@app.command()
def mirror(
    alias: Annotated[str, typer.Argument(help="Registry alias whose pinned revision is copied.")],
    destination: Annotated[str, typer.Argument(help="Mirror root, s3://bucket/prefix.")],
    force: Annotated[
        bool, typer.Option("--force", help="Copy again even if the revision is already mirrored.")
    ] = False,
    token_secret: Annotated[
        str | None,
        typer.Option(
            "--token-secret",
            help="Secrets Manager name of the HF token (default: HFLAMBDA_HF_TOKEN_SECRET; "
            "without either, huggingface_hub's own login is used).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Copy <alias>'s pinned revision from the Hub to <destination>/<revision>/ and write
    <destination>/<revision>.mirror.json last; then set the alias's source to <destination>."""
    from hflambda.secrets import HfToken
    from hflambda.warmup.mirror import mirror_model

    settings = get_settings()
    console = Console(stderr=as_json, soft_wrap=True)
    try:
        spec = load_registry(settings.registry, profile=settings.profile or None).get(alias)
    except (RegistryError, ModelNotFound) as exc:
        console.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        raise typer.Exit(2) from exc
    token = HfToken(token_secret or settings.hf_token_secret, max_age=settings.secret_max_age, ambient=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, disable=as_json) as progress:
            download = progress.add_task(f"{alias}: download {spec.repo}", total=None)
            upload = progress.add_task(f"{alias}: upload {destination}", total=None)
            result = mirror_model(
                spec,
                destination,
                settings=settings,
                token=token,
                force=force,
                download_progress=lambda done, total: progress.update(download, completed=done, total=total),
                upload_progress=lambda done, total: progress.update(upload, completed=done, total=total),
            )
    except HflambdaError as exc:
        console.print(f"[red]{alias}: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    summary = {
        "alias": result.alias,
        "repo": result.repo,
        "revision": result.revision,
        "source": result.source_uri,
        "skipped": result.skipped,
        "files": {name: entry.model_dump() for name, entry in sorted(result.files.items())},
        "bytes_uploaded": result.bytes_uploaded,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    what = (
        "already mirrored"
        if result.skipped
        else f"mirrored {len(result.files)} files ({result.bytes_uploaded} bytes)"
    )
    console.print(
        f"[green]{alias}[/green]: {result.repo}@{result.revision[:12]} {what} at {result.source_uri}/{result.revision}/"
    )
    console.print(
        f'Warm from it: set source = "{result.source_uri}" for models.{alias} (e.g. under [profiles.aws.{alias}]).'
    )
