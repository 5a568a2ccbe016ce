"""The HF token secret: shapes accepted and refused, errors that name the secret and never
echo its value (a stand-in for Powertools' provider; the moto path is in integration)."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.parameters import GetParameterError
from botocore.exceptions import ClientError

from hflambda.errors import SecretInvalid, SecretMissing
from hflambda.secrets import HfToken, read_hf_token

GOOD = "hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7"


class Provider:
    """Behaves like a Powertools SecretsProvider: values, or GetParameterError chained to a ClientError."""

    def __init__(self, value: str | bytes | None = None, code: str | None = None) -> None:
        self.value, self.code, self.calls = value, code, 0

    def get(self, name: str, max_age: int | None = None) -> str | bytes | None:
        self.calls += 1
        if self.code is not None:
            try:
                raise ClientError({"Error": {"Code": self.code, "Message": "nope"}}, "GetSecretValue")
            except ClientError as exc:
                raise GetParameterError(str(exc))  # noqa: B904  (Powertools chains implicitly, like this)
        return self.value


@pytest.mark.parametrize(
    "value",
    [GOOD, f"  {GOOD}\n", GOOD.encode(), f'{{"HF_TOKEN": "{GOOD}"}}', f'{{"token": "{GOOD}", "user": "x"}}'],
)
def test_accepted_shapes(value: str | bytes) -> None:
    assert read_hf_token("s", max_age=1, provider=Provider(value)) == GOOD


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is empty"),
        ("hf_short", "does not hold a Hugging Face token"),
        ("ghp_" + "x" * 36, "does not hold a Hugging Face token"),
        ("hf_ has spaces in it", "does not hold a Hugging Face token"),
        ('{"other": "x"}', "without a token key"),
    ],
)
def test_refused_shapes_never_echo_the_value(value: str, message: str) -> None:
    with pytest.raises(SecretInvalid, match=message) as info:
        read_hf_token("team/hf", max_age=1, provider=Provider(value))
    assert "'team/hf'" in str(info.value)
    if value:
        assert value not in str(info.value)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ResourceNotFoundException", "does not exist"),
        ("AccessDeniedException", "secretsmanager:GetSecretValue"),
        ("DecryptionFailure", "could not be read \\(DecryptionFailure\\)"),
    ],
)
def test_unreadable_secret_is_secret_missing_and_named(code: str, message: str) -> None:
    with pytest.raises(SecretMissing, match=message) as info:
        read_hf_token("team/hf", max_age=1, provider=Provider(code=code))
    assert "'team/hf'" in str(info.value)


def test_hf_token_reads_once_and_remembers_failures() -> None:
    provider = Provider(GOOD)
    token = HfToken("team/hf", provider=provider)
    assert token.get() == token.get() == GOOD and provider.calls == 1
    assert token.sends_token and token.problem is None
    assert GOOD not in token.describe() and "team/hf" in token.describe()
    broken = HfToken("team/hf", provider=Provider(code="ResourceNotFoundException"))
    assert broken.get() is False and broken.get() is False
    assert broken.provider.calls == 1  # type: ignore[union-attr]
    assert isinstance(broken.problem, SecretMissing)


@pytest.mark.parametrize(
    ("provider", "kind", "message"),
    [
        (Provider(code="ResourceNotFoundException"), SecretMissing, "does not exist"),
        (Provider(code="AccessDeniedException"), SecretMissing, "access denied"),
        (Provider("unset"), SecretInvalid, "still holds the placeholder 'unset'"),
        (Provider("hf_short"), SecretInvalid, "does not hold a Hugging Face token"),
    ],
    ids=["missing", "denied", "placeholder", "malformed"],
)
def test_an_unusable_secret_sends_no_token_and_fails_only_repos_that_need_one(
    provider: Provider, kind: type[Exception], message: str
) -> None:
    # A first deploy's secret holds the placeholder: public repos must still warm, anonymously.
    token = HfToken("team/hf", provider=provider)
    assert token.get() is False and not token.sends_token
    assert "no token" in token.describe() and "'team/hf'" in token.describe()
    needed = token.needed("models.chat", "org/private-model", "the Hub answered 401 Unauthorized")
    assert isinstance(needed, kind)
    assert needed.code in {"secret_missing", "secret_invalid"}
    text = str(needed)
    assert "'team/hf'" in text and "'org/private-model'" in text and "models.chat" in text
    assert message in text and "401" in text
    assert needed.details["secret"] == "team/hf" and needed.details["repo"] == "org/private-model"
    assert HfToken("team/hf", provider=Provider(GOOD)).needed("models.x", "org/m", "401") is None
    assert HfToken(None).needed("models.x", "org/m", "401") is None


def test_without_a_secret_no_token_is_sent_unless_ambient() -> None:
    assert HfToken(None).get() is False and not HfToken(None).sends_token
    assert "HFLAMBDA_HF_TOKEN_SECRET is not set" in HfToken(None).describe()
    assert HfToken(None, ambient=True).get() is None  # huggingface_hub's own login
    rejected = HfToken("team/hf", provider=Provider(GOOD)).rejected("org/model")
    assert (
        rejected.code == "hub_access_denied"
        and "token rejected" in str(rejected)
        and "'team/hf'" in str(rejected)
    )
