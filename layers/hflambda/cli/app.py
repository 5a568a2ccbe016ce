"""The ``hflambda`` Typer application and its root options; the command modules add to it.

Kept apart from ``hflambda.cli`` (which imports every command module) so that a command
module imports the app from here and never the package that imports it.
"""

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


__all__ = ["app"]
