"""Shared test setup. Fixtures live in tests/fixtures/<area>.py, loaded as plugins here."""

from __future__ import annotations

import os
import tempfile

# Tests never reach the network and never write outside their tmp dirs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "hflambda")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "hflambda-tests")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# never touch a developer's `make dev` state (.hflambda/) from a test
os.environ.setdefault("HFLAMBDA_VECTOR_URI", tempfile.mkdtemp(prefix="hflambda-test-vectors-"))

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.hub",
    "tests.fixtures.genai",
    "tests.fixtures.auth",
    "tests.fixtures.aws",
]
