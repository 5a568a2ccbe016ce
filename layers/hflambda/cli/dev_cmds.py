"""``hflambda dev``: the local stack in one command (see hflambda.devstack)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hflambda.cli.app import app


def _summary(console: Console, info: dict[str, object], token: str, key_dir: Path) -> None:
    api = info["api"]
    table = Table(title="hflambda dev", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("API", f"{api}  (docs: {api}/docs)")
    table.add_row("issuer", f"{info['issuer']}  (audience {info['audience']})")
    table.add_row("AWS (moto)", str(info["moto"]))
    table.add_row("index queue", str(info["queue_url"]))
    table.add_row("model store", str(info["store"]))
    table.add_row("vectors", str(info["vectors"]))
    table.add_row("logs", str(info["logs"]))
    models = info.get("models") or {}
    assert isinstance(models, dict)
    for alias, state in models.items():
        table.add_row(
            f"model {alias}", f"{state['status']} {state.get('revision') or ''} {state.get('reason') or ''}"
        )
    console.print(table)
    console.print("[bold]dev token[/bold] (sub=alice, also: hflambda token --sub alice):")
    console.print(token, soft_wrap=True, highlight=False)
    console.print("\n[bold]try it[/bold]:")
    console.print(
        "export TOKEN=$(.venv/bin/hflambda token --sub alice)", soft_wrap=True, highlight=False, markup=False
    )
    console.print(
        f"curl -s {api}/v1/embeddings -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' "
        '-d \'{"input":["hello"],"model":"embed"}\'',
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    console.print("\nCtrl-C stops everything.")


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port of the predict API on 127.0.0.1.")] = 8000,
    store: Annotated[Path | None, typer.Option(help="Model store folder (default .hflambda/models).")] = None,
    registry: Annotated[Path, typer.Option(help="Registry file.")] = Path("models.toml"),
    state: Annotated[
        Path, typer.Option(help="Folder for local state (store, vectors, logs, dev key).")
    ] = Path(".hflambda"),
    reset: Annotated[bool, typer.Option("--reset", help="Wipe the store, vectors and logs first.")] = False,
    warm: Annotated[bool, typer.Option(help="Run warmup before serving.")] = True,
    issuer_port: Annotated[int, typer.Option(help="Port of the dev token issuer.")] = 8001,
    vectors: Annotated[
        str,
        typer.Option(help="Vector backend: local (LanceDB folder) or aws (S3 Vectors + DynamoDB on moto)."),
    ] = "local",
) -> None:
    """Run the whole system locally: moto (SQS, S3, Secrets Manager), dev issuer, warmup, API, poller."""
    if vectors not in ("local", "aws"):
        raise typer.BadParameter("--vectors is local or aws")
    from hflambda.devstack import DevConfig, DevStack, install_signal_handlers

    console = Console(soft_wrap=True)
    stack = DevStack(
        DevConfig(
            state=state,
            store=store,
            registry=registry,
            port=port,
            issuer_port=issuer_port,
            warm=warm,
            reset=reset,
            vectors=vectors,
        ),
        say=lambda text: console.print(text, markup=False, highlight=False),
    )
    install_signal_handlers(stack)
    try:
        info = stack.start()
        _summary(console, info, stack.issuer.token("alice"), state / "dev-issuer")
        stack.supervise()
    except KeyboardInterrupt:
        console.print("stopping ...")
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        stack.stop()
