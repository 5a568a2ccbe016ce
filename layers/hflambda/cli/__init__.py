"""The ``hflambda`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="hflambda",
    help="Serve Hugging Face models from AWS Lambda: compile at warmup, serve lean.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)



class _CurrentStderr:
    """A stream that writes to the current ``sys.stderr`` (test runners swap it per run)."""

    def write(self, text: str) -> int:
        import sys

        return sys.stderr.write(text)

    def flush(self) -> None:
        import sys

        sys.stderr.flush()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show structured logs (on stderr)."),
) -> None:
    """Serve Hugging Face models from AWS Lambda: compile at warmup, serve lean."""
    import logging
    import os

    from hflambda.telemetry import logger

    # stdout is for results (tables, --json); structured logs go to whatever stderr is now
    logger.registered_handler.stream = _CurrentStderr()  # type: ignore[attr-defined]
    if not os.environ.get("POWERTOOLS_LOG_LEVEL"):
        logger.setLevel(logging.INFO if verbose else logging.WARNING)


# command modules register themselves on ``app`` when imported
from hflambda.cli import auth_cmds as _auth_cmds  # noqa: E402,F401
from hflambda.cli import demo_cmds as _demo_cmds  # noqa: E402,F401
from hflambda.cli import dev_cmds as _dev_cmds  # noqa: E402,F401
from hflambda.cli import index_cmds as _index_cmds  # noqa: E402,F401
from hflambda.cli import mirror_cmds as _mirror_cmds  # noqa: E402,F401
from hflambda.cli import registry_cmds as _registry_cmds  # noqa: E402,F401
from hflambda.cli import warmup_cmds as _warmup_cmds  # noqa: E402,F401

__all__ = ["app"]
