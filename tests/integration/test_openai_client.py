"""The official openai client works against a real local server's /v1/embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openai
import pytest

from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
from tests.fixtures.models import Warmed
from tests.fixtures.server import live_predict

pytestmark = pytest.mark.integration


def test_openai_embeddings(warmed: Warmed, dev_issuer: DevIssuer, tmp_path: Path) -> None:
    env = {
        "HFLAMBDA_MODEL_STORE": str(warmed.store),
        "HFLAMBDA_REGISTRY": str(warmed.registry),
        "HFLAMBDA_AUTH_ISSUER": str(dev_issuer.issuer),
        "HFLAMBDA_AUTH_AUDIENCE": DEV_AUDIENCE,
    }
    with live_predict(env, log=tmp_path / "api.log") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=dev_issuer.token("alice"), max_retries=0)
        result = client.embeddings.create(model="embed", input=["hello", "hola"])
        assert [item.index for item in result.data] == [0, 1]
        vectors = np.array([item.embedding for item in result.data])
        assert vectors.shape == (2, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert result.usage.prompt_tokens > 0
        # the client's default base64 encoding round-trips too
        assert len(client.embeddings.create(model="embed-int8", input="hello").data[0].embedding) == 384
        with pytest.raises(openai.NotFoundError, match="embed-int8"):
            client.embeddings.create(model="text-embedding-3-small", input="x")
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key="not-a-jwt", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.embeddings.create(model="embed", input="x")
