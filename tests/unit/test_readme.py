"""The README stays true: every setting is documented, the quick start is the two commands."""

from __future__ import annotations

from pathlib import Path

from hflambda.settings import Settings, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in README]
    assert missing == [], f"document these in README.md's Settings table: {missing}"


def test_quick_start_is_two_commands() -> None:
    assert "make dev " in README and "make test " in README
