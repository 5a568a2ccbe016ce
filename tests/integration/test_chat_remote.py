"""The remote engine and warmup's remote-model checks against the fake OpenAI-compatible provider."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from hflambda.generation import (
    AttemptFailed,
    ChatMessage,
    ChatRequest,
    FailureKind,
    RemoteCheckFailed,
    RemoteModelMissing,
)
from hflambda.generation.remote import RemoteChatEngine, check_remote_model
from hflambda.registry import ModelSpec, Registry, Task
from hflambda.settings import Settings
from hflambda.store import ModelStore
from hflambda.warmup import ModelStatus, run_warmup
from tests.fakes.provider import Behaviour, FakeProvider

pytestmark = pytest.mark.integration

REQUEST = ChatRequest(messages=(ChatMessage("user", "hi"),), max_tokens=4)


def spec(alias: str, provider_model: str, base_url: str, **extra: object) -> ModelSpec:
    return ModelSpec(
        alias=alias,
        repo=provider_model,
        task=Task.TEXT_GENERATION,
        engine="remote",
        base_url=base_url,
        provider_model=provider_model,
        **extra,
    )  # type: ignore[arg-type]


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def secret(value: str) -> str:
    name = f"hflambda/provider-key-{uuid.uuid4().hex[:8]}"  # unique: Powertools caches by name
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name=name, SecretString=value)
    return name


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("stored", ["sk-test-123", '{"api_key": "sk-test-123"}'])
def test_the_api_key_comes_from_secrets_manager(provider: FakeProvider, aws: None, stored: str) -> None:
    provider.required_key = "sk-test-123"
    provider.script("acme/chat", Behaviour.answer("keyed"))
    engine = RemoteChatEngine(spec("r", "acme/chat", provider.url, api_key_secret=secret(stored)), Settings())
    completion = engine.complete(REQUEST, timeout=5)
    assert completion.text == "keyed" and completion.completion_tokens == 1
    assert provider.chat_requests()[0].headers["authorization"] == "Bearer sk-test-123"


def test_a_missing_secret_is_a_failed_attempt_naming_it(provider: FakeProvider, aws: None) -> None:
    provider.script("acme/chat", Behaviour.answer())
    engine = RemoteChatEngine(
        spec("r", "acme/chat", provider.url, api_key_secret="hflambda/no-such-secret"), Settings()
    )
    with pytest.raises(AttemptFailed) as caught:
        engine.complete(REQUEST, timeout=5)
    assert caught.value.kind == FailureKind.UPSTREAM
    assert "'hflambda/no-such-secret'" in caught.value.reason
    assert provider.chat_requests() == []


def test_a_refused_key_is_an_upstream_failure(provider: FakeProvider, aws: None) -> None:
    provider.required_key = "the-right-key"
    provider.script("acme/chat", Behaviour.answer())
    engine = RemoteChatEngine(
        spec("r", "acme/chat", provider.url, api_key_secret=secret("a-wrong-key")), Settings()
    )
    with pytest.raises(AttemptFailed, match=r"refused the API key \(401") as caught:
        engine.complete(REQUEST, timeout=5)
    assert caught.value.kind == FailureKind.UPSTREAM


def test_an_unreachable_provider_is_an_upstream_failure() -> None:
    engine = RemoteChatEngine(spec("r", "acme/chat", f"http://127.0.0.1:{closed_port()}/v1"), Settings())
    with pytest.raises(AttemptFailed, match="cannot reach provider") as caught:
        engine.complete(REQUEST, timeout=2)
    assert caught.value.kind == FailureKind.UPSTREAM


def test_429_carries_retry_after(provider: FakeProvider) -> None:
    provider.script("acme/chat", Behaviour.fail(429, "slow down", retry_after=12))
    with pytest.raises(AttemptFailed, match="retry after 12 s") as caught:
        RemoteChatEngine(spec("r", "acme/chat", provider.url), Settings()).complete(REQUEST, timeout=5)
    assert caught.value.kind == FailureKind.RATE_LIMITED and caught.value.retry_after == 12


def test_max_tokens_is_capped_by_the_registry(provider: FakeProvider) -> None:
    provider.script("acme/chat", Behaviour.answer())
    engine = RemoteChatEngine(
        spec("r", "acme/chat", provider.url, max_output_tokens=16, context_tokens=64), Settings()
    )
    engine.complete(ChatRequest(messages=REQUEST.messages, max_tokens=1000), timeout=5)
    engine.complete(ChatRequest(messages=REQUEST.messages), timeout=5)
    assert [r.body["max_tokens"] for r in provider.chat_requests() if r.body] == [16, 16]


# --- warmup checks ---------------------------------------------------------------------------


def test_check_finds_the_model_in_the_listing(provider: FakeProvider) -> None:
    provider.script("acme/chat", Behaviour.answer())
    assert "listed by the provider" in check_remote_model(spec("r", "acme/chat", provider.url), Settings())
    assert provider.chat_requests() == []  # the listing was enough: no tokens spent


def test_check_asks_for_one_token_when_there_is_no_listing(provider: FakeProvider) -> None:
    provider.list_models = False
    provider.script("acme/chat", Behaviour.answer())
    assert "answered a 1-token request" in check_remote_model(
        spec("r", "acme/chat", provider.url), Settings()
    )
    (probe,) = provider.chat_requests()
    assert probe.body is not None and probe.body["max_tokens"] == 1


def test_check_accepts_a_provider_suffix(provider: FakeProvider) -> None:
    provider.script("acme/chat", Behaviour.answer())
    assert "listed" in check_remote_model(spec("r", "acme/chat:fastest", provider.url), Settings())


def test_check_reports_a_model_the_provider_does_not_serve(provider: FakeProvider) -> None:
    provider.script("acme/other", Behaviour.answer())
    with pytest.raises(RemoteModelMissing, match=r"does not serve 'acme/gone'.*lists acme/other"):
        check_remote_model(spec("r", "acme/gone", provider.url), Settings())


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("key", "refused the API key (401)"),
        ("unreachable", "cannot reach"),
        ("500", "1-token request failed: upstream_error"),
    ],
)
def test_check_failures_name_the_cause(provider: FakeProvider, setup: str, fragment: str) -> None:
    base_url = provider.url
    if setup == "key":
        provider.required_key = "secret"
    elif setup == "unreachable":
        base_url = f"http://127.0.0.1:{closed_port()}/v1"
    else:
        provider.script("acme/chat", Behaviour.fail(500, "boom", listed=False))
    with pytest.raises(RemoteCheckFailed) as caught:
        check_remote_model(spec("r", "acme/chat", base_url), Settings())
    assert fragment in str(caught.value)
    assert not isinstance(caught.value, RemoteModelMissing)


def test_warmup_reports_each_remote_model(provider: FakeProvider, tmp_path: pytest.TempPathFactory) -> None:
    provider.script("acme/alive", Behaviour.answer())
    registry = Registry(
        models={
            "alive": spec("alive", "acme/alive", provider.url, fallbacks=("dead",)),
            "dead": spec("dead", "acme/dead", provider.url),
        }
    )
    store = ModelStore(tmp_path / "store")  # type: ignore[operator]
    result = run_warmup(registry, store, Settings(model_store=store.root))
    by_alias = {m.alias: m for m in result.models}
    assert by_alias["alive"].status == ModelStatus.CHECKED
    assert "acme/alive" in (by_alias["alive"].reason or "")
    assert by_alias["dead"].status == ModelStatus.FAILED
    assert by_alias["dead"].error == "remote_model_missing"
    assert "does not serve 'acme/dead'" in (by_alias["dead"].reason or "")
    assert not result.ok
    assert store.published("alive") == []  # nothing is written for remote models
