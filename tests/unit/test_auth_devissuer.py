"""The dev issuer's key and tokens, and ``hflambda token`` (socket-free)."""

from __future__ import annotations

import json
import logging
import stat
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hflambda import telemetry
from hflambda.auth import Verifier
from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
from hflambda.cli import app
from tests.fixtures.auth import FakeJwks

ISSUER = "https://issuer.example"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    key_dir = tmp_path / "dev-issuer"
    first = DevIssuer(key_dir)
    assert mode(key_dir / "signing-key.pem") == 0o600
    assert mode(key_dir) == 0o700
    assert DevIssuer(key_dir).kid == first.kid
    assert DevIssuer(tmp_path / "other").kid != first.kid


def test_loose_key_permissions_are_tightened(tmp_path: Path) -> None:
    DevIssuer(tmp_path)
    (tmp_path / "signing-key.pem").chmod(0o644)
    DevIssuer(tmp_path)
    assert mode(tmp_path / "signing-key.pem") == 0o600


def test_jwks_publishes_only_the_public_key(dev_keys: DevIssuer) -> None:
    (key,) = dev_keys.jwks()["keys"]
    assert set(key) == {"kty", "n", "e", "kid", "use", "alg"}
    assert (key["kty"], key["alg"], key["use"], key["kid"]) == ("RSA", "RS256", "sig", dev_keys.kid)


def test_token_defaults(dev_keys: DevIssuer) -> None:
    verifier = Verifier(issuer=ISSUER, jwks=FakeJwks(dev_keys.jwks()).cache(), audience=DEV_AUDIENCE)
    claims = verifier.verify(dev_keys.token("alice", ttl=120, issuer=ISSUER, org="acme")).claims
    assert claims["aud"] == DEV_AUDIENCE
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - time.time()) < 5
    assert claims["org"] == "acme"
    assert "azp" not in claims


def test_token_needs_an_issuer_url(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no issuer URL"):
        DevIssuer(tmp_path).token("alice")


def test_recorded_ignores_missing_or_garbage_files(tmp_path: Path) -> None:
    assert DevIssuer.recorded(tmp_path) is None
    (tmp_path / "issuer.json").write_text("{not json")
    assert DevIssuer.recorded(tmp_path) is None
    (tmp_path / "issuer.json").write_text(json.dumps({"audience": "x"}))
    assert DevIssuer.recorded(tmp_path) is None


# --- hflambda token -----------------------------------------------------------------------


def run_token(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["token", *args])
    # The root callback points the Powertools log handler at the sys.stderr of the moment, which
    # under CliRunner is a buffer closed after the run; the next run's setStream() would flush
    # it and fail. Point the handler back at the real stderr.
    handler = getattr(telemetry.logger, "registered_handler", None)
    if isinstance(handler, logging.StreamHandler):
        handler.stream = sys.stderr
    return result.exit_code, result.stdout, result.stderr


def test_cli_token_is_accepted_by_the_verifier(tmp_path: Path) -> None:
    code, out, err = run_token(
        "--sub", "alice", "--ttl", "60", "--claim", "plan=pro", "--claim", "note=a=b", "--azp",
        "http://localhost:3000", "--issuer", ISSUER, "--key-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    token = out.strip()
    assert token.count(".") == 2 and "\n" not in token
    dev = DevIssuer(tmp_path)
    verifier = Verifier(
        issuer=ISSUER,
        jwks=FakeJwks(dev.jwks()).cache(),
        audience=DEV_AUDIENCE,
        authorized_parties=["http://localhost:3000"],
    )
    identity = verifier.verify(token)
    assert identity.sub == "alice"
    assert (identity.claims["plan"], identity.claims["note"]) == ("pro", "a=b")
    assert identity.claims["exp"] - identity.claims["iat"] == 60


def test_cli_token_reads_the_recorded_issuer(tmp_path: Path) -> None:
    dev = DevIssuer(tmp_path)
    (tmp_path / "issuer.json").write_text(
        json.dumps({"issuer": "http://127.0.0.1:8123", "audience": "aud-x"})
    )
    code, out, err = run_token("--sub", "bob", "--key-dir", str(tmp_path))
    assert code == 0, err
    verifier = Verifier(
        issuer="http://127.0.0.1:8123",
        jwks=FakeJwks(dev.jwks(), url="http://127.0.0.1:8123/.well-known/jwks.json").cache(),
        audience="aud-x",
    )
    assert verifier.verify(out.strip()).sub == "bob"


def test_cli_token_without_a_known_issuer_says_what_to_do(tmp_path: Path) -> None:
    code, out, err = run_token("--sub", "alice", "--key-dir", str(tmp_path))
    assert code == 2
    assert out == ""
    assert "hflambda dev" in err
    assert not (tmp_path / "signing-key.pem").exists()


def test_cli_token_rejects_a_malformed_claim(tmp_path: Path) -> None:
    code, _, err = run_token(
        "--sub", "a", "--issuer", ISSUER, "--key-dir", str(tmp_path), "--claim", "novalue"
    )
    assert code == 2
    assert "NAME=VALUE" in err
