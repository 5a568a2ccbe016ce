"""Generation: ONNX Runtime GenAI int4 (hflambda's local engine) vs transformers eager fp32, same run.

The Qwen2.5-0.5B-Instruct architecture (its real config, written below) with random weights:
decode speed does not depend on weight values. A 64-token prompt, 64 new tokens, greedy
(``min_length`` / ``min_new_tokens`` pin the count, so an early EOS cannot shorten a run).

Figures per engine (median of ``RUNS`` after one warm-up run, each engine in its own fresh
process with the same thread count):

- ``ttft_s`` — time to first token: prefill of the 64-token prompt + the first new token;
- ``decode_tok_s`` — the other 63 tokens divided by the time they took.

``streaming`` serves the registry's own ``chat`` over HTTP and times the first SSE content
chunk against the whole answer (see ``streaming()``).

The random-weight model and its GenAI int4 build are cached under ``bench/.work/``
(building takes ~30 s and a few GB of memory; the fp32 folder is ~2 GB).

    python -m bench.genai_bench
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import WORK, median, run_python, save_section

# Qwen/Qwen2.5-0.5B-Instruct config.json (architecture only: weights are random here)
QWEN25_05B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
PROMPT_TOKENS = 64
NEW_TOKENS = 64
RUNS = 3
TARGET_DECODE_SPEEDUP = 5.0
FOLDER = WORK / "qwen2.5-0.5b-random"

GENAI = """
import json, sys, time
import numpy as np
import onnxruntime_genai as og
import os
args = json.loads(os.environ["GENAI_BENCH_ARGS"])
model_dir, prompt, new, runs, threads, logits_path = args["model"], args["prompt"], args["new"], args["runs"], args["threads"], args["logits"]
config = og.Config(model_dir)
config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
model = og.Model(config)
ids = np.array(prompt, dtype=np.int32)
def run(save=False):
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + new, min_length=len(ids) + new, do_sample=False, batch_size=1)
    generator = og.Generator(model, params)
    started = time.perf_counter()
    generator.append_tokens(ids)
    if save:
        np.save(logits_path, np.array(generator.get_logits(), dtype=np.float32).reshape(-1))
    generator.generate_next_token()
    first = time.perf_counter()
    tokens = [int(generator.get_next_tokens()[0])]
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    done = time.perf_counter()
    return {"ttft_s": first - started, "decode_tok_s": (len(tokens) - 1) / (done - first), "tokens": len(tokens)}
run(save=True)  # warm-up (and the first-step logits for the agreement figure)
print(json.dumps([run() for _ in range(runs)]))
"""

TRANSFORMERS = """
import json, sys, time
import numpy as np
import torch
from transformers import AutoModelForCausalLM
import os
args = json.loads(os.environ["GENAI_BENCH_ARGS"])
model_dir, prompt, new, runs, threads, logits_path = args["model"], args["prompt"], args["new"], args["runs"], args["threads"], args["logits"]
torch.set_num_threads(threads)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
ids = torch.tensor([prompt])
def run(save=False):
    with torch.inference_mode():
        started = time.perf_counter()
        out = model(ids, use_cache=True)
        if save:
            genai = np.load(logits_path)
            ours = out.logits[0, -1].float().numpy()
            width = min(len(genai), len(ours))
            cosine = float(np.dot(genai[:width], ours[:width]) / (np.linalg.norm(genai[:width]) * np.linalg.norm(ours[:width])))
        token = out.logits[:, -1:].argmax(-1)
        past = out.past_key_values
        first = time.perf_counter()
        tokens = [int(token)]
        for _ in range(new - 1):
            out = model(token, past_key_values=past, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
            past = out.past_key_values
            tokens.append(int(token))
        done = time.perf_counter()
    result = {"ttft_s": first - started, "decode_tok_s": (len(tokens) - 1) / (done - first), "tokens": len(tokens)}
    if save:
        result["logits_cosine_vs_genai"] = cosine
    return result
warm = run(save=True)
print(json.dumps({"runs": [run() for _ in range(runs)], "logits_cosine_vs_genai": warm["logits_cosine_vs_genai"]}))
"""


def folder_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_models() -> tuple[Path, Path, dict[str, float]]:
    """The random-weight HF folder and its GenAI int4 build, cached under bench/.work/."""
    hf, int4 = FOLDER / "hf", FOLDER / "genai-int4"
    timings: dict[str, float] = {}
    if not (hf / "model.safetensors").is_file():
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        from tests.fixtures.genai import build_tiny_tokenizer

        started = time.perf_counter()
        build_tiny_tokenizer(hf)  # the builder wants a tokenizer; the benchmark feeds token ids
        torch.manual_seed(0)
        config = Qwen2Config(**{k: v for k, v in QWEN25_05B_CONFIG.items() if k != "architectures"})
        Qwen2ForCausalLM(config).eval().save_pretrained(hf, safe_serialization=True)
        timings["random_model_s"] = time.perf_counter() - started
    if not (int4 / "genai_config.json").is_file():
        from hflambda.warmup.genai import build_genai_model

        partial = int4.with_name(int4.name + ".partial")
        if partial.exists():
            import shutil

            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        timings["builder_s"] = build_genai_model(hf, partial, "int4")
        partial.rename(int4)
    return hf, int4, timings


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Medians of one engine's runs, and the runs themselves."""
    return {
        "ttft_s": round(median([r["ttft_s"] for r in runs]), 4),
        "decode_tok_s": round(median([r["decode_tok_s"] for r in runs]), 2),
        "runs": runs,
    }


def main() -> dict[str, Any]:
    """Measure both engines, save the ``generation`` section of bench/results.json, print a table."""
    import numpy as np

    hf, int4, timings = build_models()
    threads = len(os.sched_getaffinity(0))
    prompt = np.random.default_rng(0).integers(1000, 150000, PROMPT_TOKENS).tolist()
    logits = FOLDER / "genai-first-logits.npy"
    args = {"prompt": prompt, "new": NEW_TOKENS, "runs": RUNS, "threads": threads, "logits": str(logits)}
    _, genai_out = run_python(
        GENAI, env={"GENAI_BENCH_ARGS": json.dumps({**args, "model": str(int4)})}, timeout=1200
    )
    _, hf_out = run_python(
        TRANSFORMERS, env={"GENAI_BENCH_ARGS": json.dumps({**args, "model": str(hf)})}, timeout=1200
    )
    genai_runs = json.loads(genai_out.strip().splitlines()[-1])
    hf_result = json.loads(hf_out.strip().splitlines()[-1])
    genai = summarize(genai_runs)
    transformers = summarize(hf_result["runs"])
    result: dict[str, Any] = {
        "model": "Qwen2.5-0.5B-Instruct architecture, random weights",
        "prompt_tokens": PROMPT_TOKENS,
        "new_tokens": NEW_TOKENS,
        "decoding": "greedy",
        "threads": threads,
        "onnxruntime_genai_int4": {**genai, "bytes": folder_bytes(int4)},
        "transformers_eager_fp32": {**transformers, "bytes": (hf / "model.safetensors").stat().st_size},
        "first_step_logits_cosine_int4_vs_fp32": round(hf_result["logits_cosine_vs_genai"], 4),
        "build_timings_s": {k: round(v, 1) for k, v in timings.items()} or "cached in bench/.work",
    }
    result["ratios"] = {
        "decode_speedup": round(genai["decode_tok_s"] / transformers["decode_tok_s"], 2),
        "ttft_speedup": round(transformers["ttft_s"] / genai["ttft_s"], 2),
    }
    result["targets"] = {
        f"decode_speedup >= {TARGET_DECODE_SPEEDUP:g}": result["ratios"]["decode_speedup"]
        >= TARGET_DECODE_SPEEDUP
    }
    result["streaming"] = streaming()
    save_section("generation", result)
    print(table(result))
    return result


def table(result: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    genai, hf = result["onnxruntime_genai_int4"], result["transformers_eager_fp32"]
    rows = [
        ("", "decode tok/s", "time to first token", "size"),
        (
            "onnxruntime-genai int4",
            f"{genai['decode_tok_s']:.1f}",
            f"{genai['ttft_s']:.3f} s",
            f"{genai['bytes'] / 2**20:.0f} MB",
        ),
        (
            "transformers eager fp32",
            f"{hf['decode_tok_s']:.1f}",
            f"{hf['ttft_s']:.3f} s",
            f"{hf['bytes'] / 2**20:.0f} MB",
        ),
        (
            "ratio",
            f"{result['ratios']['decode_speedup']:.1f}x",
            f"{result['ratios']['ttft_speedup']:.1f}x",
            "",
        ),
    ]
    stream = result.get("streaming")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    header = f"{result['model']}: {result['prompt_tokens']}-token prompt, {result['new_tokens']} new tokens, greedy, {result['threads']} threads"
    if stream:
        lines.append(
            f"served chat (uvicorn, SSE, {stream['max_tokens']} tokens): first chunk {stream['first_chunk_s']:.3f} s, whole stream {stream['total_s']:.3f} s, unstreamed answer {stream['unstreamed_s']:.3f} s"
        )
    return "\n".join([header, *lines])


def streaming() -> dict[str, Any]:
    """Time to first chunk through the served API, for the registry's own ``chat`` (local profile).

    The default registry warmed into bench/.work/store (as the embeddings bench does; reused),
    ``functions.predict.app`` under uvicorn, the same greedy chat request streamed (SSE) and
    not. ``first_chunk_s`` is request sent → first content chunk received; ``total_s`` the
    whole stream; ``unstreamed_s`` the same request without ``stream`` (what a client waits
    before its first byte without streaming). Median of ``RUNS`` after a warm-up request.
    """
    import httpx

    from bench.embed_bench import warm_store
    from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
    from tests.fixtures.server import live_predict

    store, registry = warm_store()
    with DevIssuer(WORK / "stream-bench-keys").serve() as issuer:
        env = {
            "HFLAMBDA_MODEL_STORE": str(store),
            "HFLAMBDA_REGISTRY": str(registry),
            "HFLAMBDA_PROFILE": "local",
            "HFLAMBDA_AUTH_ISSUER": str(issuer.issuer),
            "HFLAMBDA_AUTH_AUDIENCE": DEV_AUDIENCE,
        }
        with live_predict(env, log=WORK / "stream-bench-api.log", timeout=300) as url:
            headers = {"authorization": f"Bearer {issuer.token('bench')}"}
            prompt = "Write a long story about a lighthouse keeper and the storm that changed her life."
            body = {
                "model": "chat",
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
                "max_tokens": NEW_TOKENS,
            }
            runs = []
            with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
                for i in range(RUNS + 1):
                    started = time.perf_counter()
                    first = None
                    chunks = 0
                    with client.stream(
                        "POST", "/v1/chat/completions", json={**body, "stream": True}
                    ) as response:
                        if response.status_code != 200:
                            raise RuntimeError(
                                f"streamed request failed: {response.status_code} {response.read()[:500]!r}"
                            )
                        for line in response.iter_lines():
                            if (
                                line.startswith("data: {")
                                and '"content":"' in line
                                and '"content":""' not in line
                            ):
                                chunks += 1
                                first = first or time.perf_counter() - started
                    total = time.perf_counter() - started
                    started = time.perf_counter()
                    whole = client.post("/v1/chat/completions", json=body).json()
                    unstreamed = time.perf_counter() - started
                    if i:  # the first request is the warm-up (model load)
                        runs.append(
                            {
                                "first_chunk_s": first,
                                "total_s": total,
                                "unstreamed_s": unstreamed,
                                "chunks": chunks,
                                "tokens": whole["usage"]["completion_tokens"],
                            }
                        )
    served = [r for r in runs if r["first_chunk_s"] is not None]
    if not served:
        raise RuntimeError(f"no streamed content chunk arrived: {runs}")
    return {
        "model": "the registry's chat (local profile)",
        "path": "uvicorn, functions.predict.app, SSE",
        "max_tokens": NEW_TOKENS,
        "first_chunk_s": round(median([r["first_chunk_s"] for r in served]), 4),
        "total_s": round(median([r["total_s"] for r in served]), 4),
        "unstreamed_s": round(median([r["unstreamed_s"] for r in served]), 4),
        "runs": runs,
    }


if __name__ == "__main__":
    main()
