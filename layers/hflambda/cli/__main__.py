"""``python -m hflambda.cli``."""

from hflambda.cli import app

app()
