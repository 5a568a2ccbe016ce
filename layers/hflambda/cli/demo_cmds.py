"""``hflambda demo``: a scripted walkthrough against a running ``hflambda dev``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from hflambda.cli.app import app

DOCUMENTS = [
    {
        "id": "lambda-cold-start",
        "text": "Lambda cold starts are short when models load from EFS with onnxruntime.",
        "metadata": {"topic": "serving"},
    },
    {
        "id": "hub-rate-limits",
        "text": "Pinned revisions and a single warmup writer keep the Hugging Face Hub from rate limiting us.",
        "metadata": {"topic": "warmup"},
    },
    {
        "id": "sqs-dlq",
        "text": "Poison messages are parked in a dead-letter queue where operators can inspect and redrive them.",
        "metadata": {"topic": "indexing"},
    },
    {
        "id": "jwt",
        "text": "Tokens are verified against the issuer's JWKS; unverified claims are never trusted.",
        "metadata": {"topic": "auth"},
    },
]
# the local profile's models are real (README "Development models"): the demo checks meaning, not only shape
REVIEWS = {
    "I love this, it is wonderful!": "positive",
    "This is awful, it broke on the first day.": "negative",
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
    "required": ["sentiment"],
    "additionalProperties": False,
}


class Demo:
    """Runs each step, records (step, ok, summary)."""

    def __init__(self, api: str, token: Callable[[str], str]) -> None:
        self.api = api
        self.token = token
        self.rows: list[tuple[str, bool, str]] = []

    def call(self, method: str, path: str, user: str = "alice", **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.token(user)}"}
        return httpx.request(method, f"{self.api}{path}", headers=headers, timeout=60, **kwargs)

    def step(self, name: str, action: Callable[[], str]) -> None:
        try:
            self.rows.append((name, True, action()))
        except Exception as exc:  # the table shows what failed; the exit code says so
            self.rows.append((name, False, f"{type(exc).__name__}: {exc}"))

    @staticmethod
    def ok(response: httpx.Response, *codes: int) -> dict[str, Any]:
        if response.status_code not in (codes or (200,)):
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return dict(response.json())

    def index(self) -> str:
        body = self.ok(self.call("POST", "/v1/documents", json={"documents": DOCUMENTS}), 202)
        try:
            self.token("bob")
        except RuntimeError:
            return f"queued {body['queued']}, failed {body['failed']}"
        self.ok(
            self.call(
                "POST",
                "/v1/documents",
                user="bob",
                json={
                    "documents": [
                        {"id": "bob-note", "text": "Bob's private note about cold starts on Lambda."}
                    ]
                },
            ),
            202,
        )
        return f"queued {body['queued']} for alice (+1 for bob), failed {body['failed']}"

    def search(self) -> str:
        deadline = time.monotonic() + 90
        while True:
            body = self.ok(
                self.call("POST", "/v1/search", json={"query": "why are cold starts fast?", "top_k": 3})
            )
            ids = [hit["id"] for hit in body["data"]]
            if "lambda-cold-start" in ids:
                return f"top: {ids} (scores {[round(h['score'], 3) for h in body['data']]})"
            if time.monotonic() > deadline:
                raise RuntimeError(f"documents not searchable after 90 s (got {ids}); is the poller running?")
            time.sleep(1)

    def isolation(self) -> str:
        try:
            self.token("bob")
        except RuntimeError as exc:
            return f"not run: {exc}"
        body = self.ok(
            self.call(
                "POST",
                "/v1/search",
                user="bob",
                json={"query": "cold starts", "top_k": 10, "user_id": "alice"},
            )
        )
        ids = [hit["id"] for hit in body["data"]]
        if any(i in ids for i in (d["id"] for d in DOCUMENTS)):
            raise RuntimeError(f"bob saw alice's documents: {ids}")
        return f"bob sees only {ids}"

    def classify(self) -> str:
        body = self.ok(
            self.call("POST", "/v1/models/classify/predict", json={"inputs": list(REVIEWS), "top_k": 1})
        )
        labels = [p[0]["label"] for p in body["predictions"]]
        if labels != list(REVIEWS.values()):
            raise RuntimeError(f"expected {list(REVIEWS.values())}, got {labels}")
        return (
            ", ".join(
                f"{text!r}: {p[0]['label']} {p[0]['score']:.2f}"
                for text, p in zip(REVIEWS, body["predictions"], strict=True)
            )
            + f" (revision {body['revision'][:24]})"
        )

    def embed(self) -> str:
        body = self.ok(
            self.call("POST", "/v1/embeddings", json={"input": ["hello", "world"], "model": "embed"})
        )
        return f"{len(body['data'])} vectors of {len(body['data'][0]['embedding'])} dims, {body['usage']['prompt_tokens']} tokens"

    def chat(self) -> str:
        request = {
            "model": "chat",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 128,
            "temperature": 0,
        }
        body = self.ok(self.call("POST", "/v1/chat/completions", json=request))
        choice = body["choices"][0]
        return f"{body['model']}: {choice['message']['content'][:160]!r} (finish {choice['finish_reason']}, {body['usage']['completion_tokens']} tokens)"

    def generate(self) -> str:
        answers = []
        for review, expected in REVIEWS.items():
            request = {
                "model": "chat",
                "messages": [
                    {
                        "role": "user",
                        "content": f"Is the review {review!r} positive or negative? Answer in JSON.",
                    }
                ],
                "max_tokens": 32,
                "temperature": 0,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "review", "schema": ANSWER_SCHEMA, "strict": True},
                },
            }
            body = self.ok(self.call("POST", "/v1/chat/completions", json=request))
            answer = json.loads(body["choices"][0]["message"]["content"])
            if answer != {"sentiment": expected}:
                raise RuntimeError(f"{review!r}: expected {expected}, got {answer}")
            answers.append(str(answer))
        return f"{body['model']}: {', '.join(answers)}"

    def delete(self) -> str:
        self.ok(self.call("DELETE", "/v1/documents/jwt"), 202)
        return "queued delete of 'jwt'"


@app.command()
def demo(
    state: Annotated[Path, typer.Option(help="State folder of the running `hflambda dev`.")] = Path(
        ".hflambda"
    ),
    url: Annotated[
        str | None,
        typer.Option(
            help="The API to run against (e.g. the front door `make rehearse` prints); default: the running `hflambda dev`."
        ),
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option(
            help="Bearer token of the first user; repeat for a second user (the isolation step). Default: minted by the dev issuer."
        ),
    ] = None,
) -> None:
    """Index, search, classify, embed and generate against a running `hflambda dev` (or `--url`)."""
    from hflambda.auth.devissuer import DevIssuer

    console = Console(soft_wrap=True)
    tokens: dict[str, str] = {}
    given = list(token or [])
    if url and given:
        api = url.rstrip("/")
        tokens["alice"] = given[0]
        if len(given) > 1:
            tokens["bob"] = given[1]

        def mint(user: str) -> str:
            if user not in tokens:
                raise RuntimeError(f"no token for a second user: pass --token twice (user {user!r})")
            return tokens[user]

        token_for = mint
    else:
        info_file = state / "dev.json"
        if not info_file.is_file():
            console.print(
                f"[red]{info_file} not found: start `hflambda dev` (or `make dev`) first, or pass --url and --token.[/red]"
            )
            raise typer.Exit(2)
        info = json.loads(info_file.read_text())
        api = (url or info["api"]).rstrip("/")
        issuer = DevIssuer(state / "dev-issuer")

        def from_issuer(user: str) -> str:
            if user not in tokens:
                tokens[user] = issuer.token(user, issuer=info["issuer"], audience=info["audience"])
            return tokens[user]

        token_for = from_issuer

    run = Demo(api, token_for)
    for name, action in [
        ("index documents", run.index),
        ("search (alice)", run.search),
        ("isolation (bob)", run.isolation),
        ("classify", run.classify),
        ("embed", run.embed),
        ("chat", run.chat),
        ("generate JSON", run.generate),
        ("delete document", run.delete),
    ]:
        run.step(name, action)
    table = Table(title=f"hflambda demo against {api}")
    for column in ("step", "result", "detail"):
        table.add_column(column, overflow="fold")
    for name, ok, detail in run.rows:
        table.add_row(name, "[green]ok[/green]" if ok else "[red]failed[/red]", detail)
    console.print(table)
    if not all(ok for _, ok, _ in run.rows):
        raise typer.Exit(1)
