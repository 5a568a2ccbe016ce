"""The ``hflambda`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="hflambda",
    help="Serve Hugging Face models from AWS Lambda: compile at warmup, serve lean.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)



@app.callback()
def _root() -> None:
    """Serve Hugging Face models from AWS Lambda: compile at warmup, serve lean."""


# command modules register themselves on ``app`` when imported
from hflambda.cli import auth_cmds as _auth_cmds  # noqa: E402,F401
from hflambda.cli import registry_cmds as _registry_cmds  # noqa: E402,F401
from hflambda.cli import warmup_cmds as _warmup_cmds  # noqa: E402,F401

__all__ = ["app"]
