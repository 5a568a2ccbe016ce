"""``hflambda check``: validate a registry file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hflambda.cli.app import app
from hflambda.registry import check_registry
from hflambda.settings import get_settings


@app.command()
def check(
    path: Annotated[Path | None, typer.Argument(help="Registry file (default: HFLAMBDA_REGISTRY).")] = None,
    profile: Annotated[
        str | None, typer.Option(help="Profile whose overrides to check too (default: HFLAMBDA_PROFILE).")
    ] = None,
) -> None:
    """Validate the registry: print every problem with alias and field; exit 2 on any."""
    settings = get_settings()
    target = path or settings.registry
    budget_mb = settings.model_memory_budget_mb or int(
        settings.predict_memory_mb * 0.6
    )  # the pool's budget rule
    problems = check_registry(
        target,
        profile=profile if profile is not None else (settings.profile or None),
        memory_budget_mb=budget_mb,
        function_memory_mb=settings.predict_memory_mb,
    )
    console = Console(soft_wrap=True)
    if problems:
        console.print(f"[red]{target}: {len(problems)} problem(s)[/red]")
        for problem in problems:
            console.print(f"  {problem}", markup=False, highlight=False)
        raise typer.Exit(2)
    console.print(f"[green]{target}: ok[/green]")
