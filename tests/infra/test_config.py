"""DeployConfig: limits declared on the fields, the messages a bad context gets, the docs table.

No synthesis here (fast): the config is built from context dicts as ``from_node`` does, and
once through ``build_app`` to prove the CDK-facing error is the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdk.config import (
    DEPLOY_DOC,
    REGENERATE,
    SETTINGS,
    DeployConfig,
    documented_table,
    main,
    markdown_table,
)

HEADER = 'invalid CDK context (set with -c key=value or in cdk.json\'s "context"):'


def _error(context: dict[str, object]) -> str:
    with pytest.raises(ValueError) as caught:
        DeployConfig.from_context(context)
    message = str(caught.value)
    assert message.startswith(HEADER + "\n  "), message
    return message


@pytest.mark.parametrize(
    ("context", "line"),
    [
        ({"nat_mode": "nat"}, "nat_mode must be one of 'gateway', 'instance', 'none', got 'nat'"),
        ({"architecture": "arm"}, "architecture must be one of 'x86_64', 'arm64', got 'arm'"),
        ({"vector_dimensions": 0}, "vector_dimensions must be 1..4096 (S3 Vectors), got 0"),
        ({"vector_dimensions": "5000"}, "vector_dimensions must be 1..4096 (S3 Vectors), got '5000'"),
        (
            {"auth_issuer": "http://clerk.example.com"},
            "auth_issuer must be an https URL, got 'http://clerk.example.com'",
        ),
        ({"auth_audience": ""}, "auth_audience must be at least one value (API Gateway requires it), got ()"),
        ({"auth_audience": 5}, "auth_audience: expected a list or comma-separated string, got 5"),
        (
            {"predict_timeout_s": "30"},
            "predict_timeout_s must be 1..29 (HTTP API integrations stop at 30 s), got '30'",
        ),
        ({"index_timeout_s": 901}, "index_timeout_s must be 1..900 (Lambda's limit), got 901"),
        (
            {"index_max_concurrency": 1},
            "index_max_concurrency must be 2..1000 (SQS event source limit), got 1",
        ),
        (
            {"index_batch_size": 10_001},
            "index_batch_size must be 1..10000 (SQS event source limit), got 10001",
        ),
        ({"index_batch_size": "many"}, "index_batch_size must be an integer (1..10000), got 'many'"),
        (
            {"index_batching_window_s": 301},
            "index_batching_window_s must be 0..300 (SQS event source limit), got 301",
        ),
        ({"predict_memory_mb": 64}, "predict_memory_mb must be 128..10240 (Lambda's limits), got 64"),
        ({"index_memory_mb": 10241}, "index_memory_mb must be 128..10240 (Lambda's limits), got 10241"),
        ({"warmup_memory_mb": 127}, "warmup_memory_mb must be 128..10240 (Lambda's limits), got 127"),
        ({"warmup_ephemeral_mb": 511}, "warmup_ephemeral_mb must be 512..10240 (Lambda's limits), got 511"),
        ({"predict_provisioned_concurrency": -1}, "predict_provisioned_concurrency must be >= 0, got -1"),
        ({"warmup_reserved_concurrency": -1}, "warmup_reserved_concurrency must be >= 0 (0: none), got -1"),
        ({"max_azs": 7}, "max_azs must be 1..6, got 7"),
        (
            {"warmup_schedule": "daily"},
            "warmup_schedule must be an EventBridge `rate(...)` or `cron(...)` expression, got 'daily'",
        ),
        ({"tracing": "maybe"}, "tracing must be true or false, got 'maybe'"),
        (
            {"index_batch_size": 20, "index_batching_window_s": 0},
            "index_batch_size > 10 needs index_batching_window_s >= 1 "
            "(got index_batch_size=20, index_batching_window_s=0; SQS event source rule)",
        ),
        (
            {"registry": "../elsewhere.toml"},
            "registry must be a file inside the repo (the image build context): ../elsewhere.toml",
        ),
        ({"nat": "none"}, "nat: not a setting (docs/deploy.md#settings-cdk-context lists them)"),
        (
            {"registry": "missing.toml"},
            f"registry file not found: {Path(__file__).resolve().parents[2] / 'missing.toml'}",
        ),
    ],
)
def test_a_bad_value_is_named_with_what_it_must_be_and_what_it_got(
    context: dict[str, object], line: str
) -> None:
    assert _error(context).splitlines()[1:] == [f"  {line}"]


def test_every_bad_key_is_reported_at_once() -> None:
    lines = _error({"nat_mode": "nat", "max_azs": 0, "predict_timeout_s": 40}).splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["predict_timeout_s", "nat_mode", "max_azs"]


def test_context_strings_and_json_values_are_parsed() -> None:
    config = DeployConfig.from_context(
        {
            "auth_audience": "a, b,,",
            "cors_allow_origins": ["https://app.example.com"],
            "predict_timeout_s": "20",
            "account": 123456789012,
            "tracing": "false",
            "nat_mode": "none",
        }
    )
    assert config.auth_audience == ("a", "b")
    assert config.cors_allow_origins == ("https://app.example.com",)
    assert config.predict_timeout_s == 20
    assert config.account == "123456789012"
    assert config.tracing is False
    assert DeployConfig.from_context({"tracing": "true"}).tracing is True
    assert config.nat_mode == "none"


def test_defaults_are_valid_and_the_config_is_frozen() -> None:
    config = DeployConfig.from_context({})
    assert config == DeployConfig()
    assert config.queue_visibility_s == 6 * config.index_timeout_s
    with pytest.raises(ValueError):
        config.max_azs = 3  # type: ignore[misc]


def test_the_cdk_app_raises_the_same_message_naming_the_context_key() -> None:
    from cdk.app import build_app

    with pytest.raises(
        ValueError,
        match=r"predict_timeout_s must be 1\.\.29 \(HTTP API integrations stop at 30 s\), got '45'",
    ):
        build_app({"predict_timeout_s": "45"}, with_nag=False)


def test_every_setting_has_a_description() -> None:
    missing = [name for name in SETTINGS if not (DeployConfig.model_fields[name].description or "").strip()]
    assert missing == []


def test_deploy_doc_settings_table_is_generated_from_the_fields() -> None:
    assert documented_table(DEPLOY_DOC.read_text()) == markdown_table(), (
        f"docs/deploy.md's settings table is stale: run {REGENERATE}"
    )


def test_the_generator_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--markdown"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == markdown_table()
    assert printed.splitlines()[0] == "| setting | type / allowed | default | meaning |"
    assert "| `predict_timeout_s` | integer, 1..29 | `29` |" in printed
    assert "| `nat_mode` | `gateway` \\| `instance` \\| `none` | `gateway` |" in printed
