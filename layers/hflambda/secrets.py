"""The Hugging Face token, read from AWS Secrets Manager through Powertools parameters.

Only warmup holds the token. It is read lazily — the first time a model actually has to be
fetched from the Hub, never for a model that is already current — through
``aws_lambda_powertools.utilities.parameters.get_secret`` with an explicit cache age, and
it is never logged: messages name the secret, never its value.

Policy (``HfToken``):

- ``HFLAMBDA_HF_TOKEN_SECRET`` set and holding a token: it is sent with every Hub fetch.
- set, but the secret is missing, unreadable, empty, malformed or still the placeholder CDK
  creates it with: requests go without a token, so public repos still warm (a first deploy
  serves its public models before anyone sets the token). The reason is logged once as a
  warning, and every repo that turns out to need a token (401, 403, gated, or "not found"
  to an anonymous request, as private repos answer) fails with that reason —
  ``SecretMissing`` / ``SecretInvalid`` naming the secret and the repo (``HfToken.needed``).
- not set: Hub requests are anonymous (public repos work); a 401/404 then says that no token
  was sent. ``ambient=True`` (operator CLI commands such as ``hflambda mirror``) instead lets
  huggingface_hub use its own login (``HF_TOKEN`` or ``hf auth login``).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from hflambda.errors import HubAccessDenied, SecretInvalid, SecretMissing
from hflambda.telemetry import logger

__all__ = ["HF_TOKEN_RE", "PLACEHOLDER", "HfToken", "read_hf_token", "read_secret"]

# user access tokens: "hf_" then letters and digits (34 of them today; be lenient on length)
HF_TOKEN_RE = re.compile(r"^hf_[A-Za-z0-9]{8,}$")
# keys accepted when the secret holds a JSON object instead of the bare token
JSON_KEYS = ("HF_TOKEN", "hf_token", "token", "HUGGING_FACE_HUB_TOKEN")
# what CDK creates the secret with (CloudFormation cannot create an empty secret)
PLACEHOLDER = "unset"


def _client_error_code(exc: BaseException) -> str | None:
    """The AWS error code behind a Powertools GetParameterError (it chains the boto error)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
        seen = seen.__cause__ or seen.__context__
    return None


def read_secret(name: str, *, max_age: int, provider: Any | None = None) -> str | bytes:
    """The raw value of secret ``name`` (cached ``max_age`` seconds); SecretMissing says why not.

    ``provider`` is a Powertools ``SecretsProvider`` (tests pass one built on a moto client);
    by default ``parameters.get_secret`` and its shared provider are used.
    """
    from aws_lambda_powertools.utilities import parameters

    try:
        if provider is not None:
            value = provider.get(name, max_age=max_age)
        else:
            value = parameters.get_secret(name, max_age=max_age)
    except parameters.GetParameterError as exc:
        code = _client_error_code(exc)
        if code == "ResourceNotFoundException":
            raise SecretMissing(
                f"The HF token secret {name!r} does not exist (Secrets Manager: ResourceNotFoundException). "
                "Create it with the token as its value, or fix HFLAMBDA_HF_TOKEN_SECRET.",
                secret=name,
            ) from None
        if code in {"AccessDeniedException", "AccessDenied"}:
            raise SecretMissing(
                f"The HF token secret {name!r} cannot be read: access denied. Grant the warmup role "
                "secretsmanager:GetSecretValue on it (and kms:Decrypt if it uses a customer key).",
                secret=name,
            ) from None
        raise SecretMissing(
            f"The HF token secret {name!r} could not be read ({code or type(exc.__context__).__name__}). "
            "Check that it exists in this region and that warmup may read it.",
            secret=name,
        ) from None
    if value is None:
        raise SecretMissing(f"The HF token secret {name!r} has no value.", secret=name)
    return value  # type: ignore[no-any-return]


def _token_from_value(name: str, raw: str | bytes) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in JSON_KEYS:
                if isinstance(data.get(key), str):
                    text = data[key].strip()
                    break
            else:
                raise SecretInvalid(
                    f"The HF token secret {name!r} holds a JSON object without a token key "
                    f"(expected one of {', '.join(JSON_KEYS)}).",
                    secret=name,
                )
    if not text:
        raise SecretInvalid(
            f"The HF token secret {name!r} is empty. Put a Hugging Face read token in it.", secret=name
        )
    if text == PLACEHOLDER:
        raise SecretInvalid(
            f"The HF token secret {name!r} still holds the placeholder {PLACEHOLDER!r} it was created with. "
            "Put a Hugging Face read token in it (aws secretsmanager put-secret-value, docs/deploy.md).",
            secret=name,
        )
    if not HF_TOKEN_RE.match(text):
        # never echo the value: say only what shape was expected and what length was found
        raise SecretInvalid(
            f"The HF token secret {name!r} does not hold a Hugging Face token (expected 'hf_' followed by "
            f"letters and digits; found {len(text)} characters of something else). "
            "Copy a read token from https://huggingface.co/settings/tokens into the secret.",
            secret=name,
        )
    return text


def read_hf_token(name: str, *, max_age: int, provider: Any | None = None) -> str:
    """The HF token held by secret ``name``: a bare ``hf_...`` string or a JSON object with one."""
    return _token_from_value(name, read_secret(name, max_age=max_age, provider=provider))


class HfToken:
    """The token a warmup run sends to the Hub, fetched on first use and kept for the run.

    ``get()`` returns what huggingface_hub's ``token=`` argument expects: the token string,
    ``False`` (send none) or ``None`` (let huggingface_hub use its own login; only with
    ``ambient=True``). A secret that cannot give a token yields ``False`` and is remembered
    as ``problem``, so a run with many models asks Secrets Manager once, warns once, and
    ``needed()`` reports the same reason for each repo that needs a token.
    """

    def __init__(
        self,
        secret_name: str | None,
        *,
        max_age: int = 300,
        provider: Any | None = None,
        ambient: bool = False,
    ) -> None:
        self.secret_name = secret_name or None
        self.max_age = max_age
        self.provider = provider
        self.ambient = ambient
        self._lock = threading.Lock()
        self._value: str | None = None
        self._error: SecretMissing | SecretInvalid | None = None

    def get(self) -> str | bool | None:
        """The token for huggingface_hub; ``False`` when the configured secret cannot give one."""
        if self.secret_name is None:
            return None if self.ambient else False
        with self._lock:
            if self._error is not None:
                return False
            if self._value is None:
                try:
                    self._value = read_hf_token(
                        self.secret_name, max_age=self.max_age, provider=self.provider
                    )
                except (SecretMissing, SecretInvalid) as exc:
                    self._error = exc
                    logger.warning(
                        "HF token secret unusable; Hub requests go without a token",
                        extra={"secret": self.secret_name, "error": exc.code, "reason": str(exc)},
                    )
                    return False
            return self._value

    @property
    def problem(self) -> SecretMissing | SecretInvalid | None:
        """Why the configured secret gave no token (None: it did, or none is configured, or not read yet)."""
        return self._error

    def needed(self, where: str, repo: str, answer: str) -> SecretMissing | SecretInvalid | None:
        """The error for ``repo``, which needs a token (the Hub gave ``answer`` to an anonymous
        request), when the configured secret could not give one; None otherwise."""
        error = self._error
        if error is None or self.secret_name is None:
            return None
        reason = error.message[:1].lower() + error.message[1:]
        return type(error)(
            f"{where}: {repo!r} needs a Hugging Face token ({answer} to a request without one: the repo is "
            f"private, gated or does not exist), and {reason}",
            secret=self.secret_name,
            repo=repo,
        )

    def describe(self) -> str:
        """Which credentials were used, for error messages (never the token itself)."""
        if self.secret_name is not None and self._error is not None:
            return f"no token (secret {self.secret_name!r} holds none usable: {self._error.code})"
        if self.secret_name is not None:
            return f"the token from secret {self.secret_name!r}"
        if self.ambient:
            return "huggingface_hub's own login (HF_TOKEN or `hf auth login`), if any"
        return "no token (HFLAMBDA_HF_TOKEN_SECRET is not set)"

    @property
    def sends_token(self) -> bool:
        """True when requests carry a token from the configured secret."""
        return self.secret_name is not None and self._error is None

    def rejected(self, repo: str) -> HubAccessDenied:
        """The error for a 401 from the Hub (see ``needed`` first when no token was sent)."""
        if self.sends_token:
            return HubAccessDenied(
                f"token rejected: the Hugging Face Hub answered 401 Unauthorized to {self.describe()} while "
                f"fetching {repo!r}. The token is invalid, revoked or expired; put a valid read token in the secret.",
                repo=repo,
                secret=self.secret_name,
            )
        return HubAccessDenied(
            f"the Hugging Face Hub answered 401 Unauthorized for {repo!r} and {self.describe()} was sent. "
            "Private and gated repos need a token: set HFLAMBDA_HF_TOKEN_SECRET to a secret holding one.",
            repo=repo,
        )
