"""The ``hflambda`` command line (typer). Each command group lives in its own module.

The Typer object is :data:`hflambda.cli.app.app`; importing this package imports every
command module, which register their commands on it (``hflambda = "hflambda.cli:app"``).
"""

from __future__ import annotations

from hflambda.cli import (  # noqa: F401  (each module registers its commands on ``app``)
    auth_cmds,
    demo_cmds,
    dev_cmds,
    index_cmds,
    mirror_cmds,
    registry_cmds,
    warmup_cmds,
)
from hflambda.cli.app import app

__all__ = ["app"]
