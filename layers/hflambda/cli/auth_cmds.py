"""``hflambda token``: print a token the local dev issuer signed (for curl and the openai client)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hflambda.auth.devissuer import DEFAULT_KEY_DIR, DEV_AUDIENCE, DevIssuer
from hflambda.cli.app import app


def _parse_claims(pairs: list[str]) -> dict[str, str]:
    claims: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--claim")
        claims[name.strip()] = value
    return claims


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="The caller's id (the token's sub).")],
    ttl: Annotated[int, typer.Option(min=1, help="Seconds the token stays valid.")] = 3600,
    claim: Annotated[
        list[str] | None, typer.Option(help="Extra claim NAME=VALUE (a string); repeatable.")
    ] = None,
    azp: Annotated[str | None, typer.Option(help="Authorized party (azp) claim.")] = None,
    issuer: Annotated[
        str | None, typer.Option(help="Issuer URL (default: the one the last `hflambda dev` served).")
    ] = None,
    audience: Annotated[
        str | None,
        typer.Option(help=f"Audience (default: the dev issuer's, {DEV_AUDIENCE!r}; '' for none)."),
    ] = None,
    key_dir: Annotated[Path, typer.Option(help="Dev issuer key folder.")] = DEFAULT_KEY_DIR,
) -> None:
    """Print a bearer token signed by the dev issuer that `hflambda dev` runs.

    Use it as `curl -H "Authorization: Bearer $(hflambda token --sub alice)" ...`.
    """
    record = DevIssuer.recorded(key_dir)
    iss = issuer or (record or {}).get("issuer")
    if not iss:
        typer.echo(
            f"No dev issuer recorded in {key_dir}: start `hflambda dev` first, or pass --issuer.", err=True
        )
        raise typer.Exit(2)
    if audience is None:
        audience = record["audience"] if record and "audience" in record else DEV_AUDIENCE
    dev = DevIssuer(key_dir, audience=audience or None)
    typer.echo(dev.token(sub, ttl=ttl, azp=azp, issuer=iss, **_parse_claims(claim or [])))
