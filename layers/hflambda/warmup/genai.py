"""Warmup for text generation: the ONNX Runtime GenAI model builder, a parity check, remote checks.

Local models (``engine = "local"``): the fetched Hugging Face folder goes through
``python -m onnxruntime_genai.models.builder -i <hf folder> -o <out> -p int4|int8|fp32 -e cpu``
(a subprocess: the builder is a script, and a crash there must not take warmup down), which
writes the ONNX decoder, ``genai_config.json`` and the tokenizer files; the chat template is
copied along when the builder did not.

What *parity* means for generation (every figure lands in the manifest):

- **chat template** — GenAI's tokenizer renders each probe conversation exactly like
  transformers' ``apply_chat_template`` (gate: identical strings).
- **tokenizer** — GenAI encodes each rendered prompt to the same ids as transformers
  (gate: identical ids).
- **logits** — next-token logits after each prompt, GenAI vs transformers fp32 eager
  (gate: cosine ≥ ``MIN_LOGITS_COSINE[precision]``, or the model's ``parity_min_cosine``
  when the registry sets it; int4/int8 weights move logits a little).
- **greedy agreement** — how many of the first ``GREEDY_TOKENS`` greedy tokens agree
  (reported, not gated: with quantized weights near-ties flip, and random test weights are
  all near-ties).
- **smoke** — a plain and a JSON-schema-guided generation run to completion, and the guided
  answer validates (gate).

The GenAI side of the check runs in a subprocess (``hflambda.warmup.genai.main(["probe", ...])``):
older GenAI releases aborted the whole process on some guidance schemas.

Remote models (``engine = "remote"``) are not compiled: ``check_remote_model``
(:mod:`hflambda.generation.remote`) confirms each provider model id ahead of time and the run
reports it as ``checked`` or ``failed``.

The warmup runner's task tables (``hflambda.warmup.runner.COMPILERS``, ``EXPORT_SETTINGS``,
``REMOTE_CHECKERS``) name this module's ``compile_generation`` and ``export_settings`` and
import it on the first generation model; importing this module registers nothing.
transformers is imported only inside the parity check.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hflambda.errors import ExportFailed, ParityFailed
from hflambda.generation.base import ResponseFormat, validate_output
from hflambda.generation.exceptions import AttemptFailed
from hflambda.generation.files import CHAT_TEMPLATE, GENAI_CONFIG, read_chat_template
from hflambda.limits import check_generation_memory, generation_memory_mb
from hflambda.registry import ModelSpec
from hflambda.settings import get_settings
from hflambda.warmup.types import CompileResult

__all__ = [
    "MIN_LOGITS_COSINE",
    "PROBE_CONVERSATIONS",
    "SMOKE_SCHEMA",
    "build_genai_model",
    "check_parity",
    "compile_generation",
    "export_settings",
    "run_probe",
]

BUILDER_TIMEOUT_S = 1800
PROBE_TIMEOUT_S = 600
GREEDY_TOKENS = 8
# defaults per precision; a registry ``parity_min_cosine`` set on the model wins. Measured on
# real weights (SmolLM2-135M-Instruct, bench/quality_bench.py): int4 with blocks of 16 keeps the
# next-token logits at cosine ≥ 0.97 on the probes and answers like fp32; the builder's default
# blocks of 32 fell to 0.52 on some prompts and rambled, so 0.95 refuses such a build (the
# earlier 0.8 came from random weights, whose logits are all near-ties; the tiny random Qwen2
# fixture measures 0.99 at int4)
MIN_LOGITS_COSINE = {"fp32": 0.999, "int8": 0.95, "int4": 0.95}
PROBE_CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in JSON."},
        {"role": "user", "content": 'Café déjà vu: naïve résumé, 東京 🙂 — is this "valid"?'},
        {"role": "assistant", "content": '{"valid": true}'},
        {"role": "user", "content": "Again,\nplease."},
    ],
]
# bounded on purpose: even random weights finish it (FACTS: enums, booleans, short strings)
SMOKE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "label": {"enum": ["yes", "no"]},
        "note": {"type": "string", "maxLength": 8},
    },
    "required": ["ok", "label", "note"],
    "additionalProperties": False,
}
SMOKE_MAX_TOKENS = 64
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


def genai_version() -> str:
    """The installed onnxruntime-genai version (without importing its runtime)."""
    return importlib.metadata.version("onnxruntime-genai")


def precision(spec: ModelSpec) -> str:
    """Builder precision: the registry's quantize, else fp32."""
    return spec.quantize or "fp32"


def export_settings(spec: ModelSpec) -> dict[str, Any]:
    """Settings that decide the built files; a change means a new build."""
    return {
        "task": spec.task.value,
        "format": "onnxruntime-genai",
        "builder": f"onnxruntime-genai {genai_version()}",
        "precision": precision(spec),
        "execution_provider": "cpu",
        **({"builder_options": list(spec.builder_options)} if spec.builder_options else {}),
    }


def _check_source(source: Path) -> dict[str, Any]:
    """The HF folder's config, after checking what the builder and GenAI's tokenizer need."""
    config_path = source / "config.json"
    if not config_path.is_file():
        raise ExportFailed(
            f"{source} has no config.json; the model builder needs a Hugging Face model folder"
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("eos_token_id") is None:
        raise ExportFailed(
            f"{config_path} has no eos_token_id: genai_config.json would get null and generation would never stop; "
            "set eos_token_id in the model's config"
        )
    tokenizer_path = source / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ExportFailed(
            f"{source} has no tokenizer.json: ONNX Runtime GenAI needs the fast tokenizer file"
        )
    if json.loads(tokenizer_path.read_text(encoding="utf-8")).get("decoder") is None:
        raise ExportFailed(
            f"{tokenizer_path} has no decoder (e.g. ByteLevel): GenAI cannot decode tokens back to text"
        )
    if read_chat_template(source) is None:
        raise ExportFailed(
            f"{source} has no chat template (chat_template.jinja or tokenizer_config.json): cannot serve chat"
        )
    return dict(config)


def build_genai_model(
    source: Path,
    out: Path,
    precision_name: str,
    *,
    timeout: float = BUILDER_TIMEOUT_S,
    options: tuple[str, ...] = (),
) -> float:
    """Run the ONNX Runtime GenAI model builder on a local HF folder; returns seconds taken.

    ``options`` ("key=value") go to the builder's ``--extra_options`` (e.g. ``block_size=16``).
    """
    cache = Path(tempfile.mkdtemp(prefix="genai-builder-", dir=out.parent if out.parent.is_dir() else None))
    command = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(source),
        "-o",
        str(out),
        "-p",
        precision_name,
        "-e",
        "cpu",
        "-c",
        str(cache),
    ]
    if options:
        command += ["--extra_options", *options]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # a local folder: never the Hub
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise ExportFailed(
            f"the ONNX Runtime GenAI model builder did not finish within {timeout:.0f} s"
        ) from None
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ExportFailed(f"the ONNX Runtime GenAI model builder failed (exit {done.returncode}):\n{tail}")
    if not (out / GENAI_CONFIG).is_file():
        raise ExportFailed(f"the model builder wrote no {GENAI_CONFIG} in {out}")
    return time.perf_counter() - started


def _ship_tokenizer(source: Path, out: Path) -> None:
    """Make sure the chat template and tokenizer files travel with the model."""
    for name in TOKENIZER_FILES:
        if not (out / name).exists() and (source / name).is_file():
            shutil.copy2(source / name, out / name)
    if not (out / CHAT_TEMPLATE).exists():
        template = read_chat_template(source)
        if template is not None:
            (out / CHAT_TEMPLATE).write_text(template, encoding="utf-8")


# --- the GenAI side of parity (runs in a subprocess) -------------------------------------------


def _generate(
    og: Any, model: Any, ids: Any, max_new: int, schema: dict[str, Any] | None = None
) -> tuple[list[int], Any, float]:
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max_new, do_sample=False, batch_size=1)
    if schema is not None:
        params.set_guidance(
            "json_schema", json.dumps({**schema, "x-guidance": {"whitespace_flexible": False}})
        )
    generator = og.Generator(model, params)
    started = time.perf_counter()
    generator.append_tokens(ids)
    logits = np.array(generator.get_logits(), dtype=np.float32).reshape(-1)
    tokens: list[int] = []
    first_token_s = 0.0
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
        if len(tokens) == 1:
            first_token_s = time.perf_counter() - started
    return tokens, logits, first_token_s


def probe(model_dir: Path, result_dir: Path) -> dict[str, Any]:
    """Render, encode and generate with GenAI for the probe conversations; logits go to .npy files."""
    import onnxruntime_genai as og

    model = og.Model(str(model_dir))
    tokenizer = og.Tokenizer(model)
    template = read_chat_template(model_dir)
    eos = {int(t) for t in tokenizer.eos_token_ids}
    items = []
    for index, conversation in enumerate(PROBE_CONVERSATIONS):
        rendered = tokenizer.apply_chat_template(
            json.dumps(conversation), template_str=template, add_generation_prompt=True
        )
        ids = tokenizer.encode(rendered)
        tokens, logits, first_token_s = _generate(og, model, ids, GREEDY_TOKENS)
        np.save(result_dir / f"logits-{index}.npy", logits)
        items.append(
            {
                "rendered": rendered,
                "ids": [int(i) for i in ids],
                "greedy": tokens,
                "first_token_s": first_token_s,
            }
        )
    prompt = tokenizer.apply_chat_template(
        json.dumps(PROBE_CONVERSATIONS[0]), template_str=template, add_generation_prompt=True
    )
    ids = tokenizer.encode(prompt)
    guided, _, _ = _generate(og, model, ids, SMOKE_MAX_TOKENS, SMOKE_SCHEMA)
    answer = [t for t in guided if t not in eos]
    return {
        "conversations": items,
        "guided_text": tokenizer.decode(answer) if answer else "",
        "guided_tokens": len(answer),
        "eos": sorted(eos),
    }


def run_probe(
    model_dir: Path, *, timeout: float = PROBE_TIMEOUT_S
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """``probe`` in a child process; ParityFailed when GenAI cannot load or run the model."""
    with tempfile.TemporaryDirectory(prefix="genai-probe-") as tmp:
        result_dir = Path(tmp)
        # -c rather than -m: running a module of an imported package as __main__ imports it twice
        command = [
            sys.executable,
            "-c",
            "import sys; from hflambda.warmup.genai import main; sys.exit(main(sys.argv[1:]))",
            "probe",
            str(model_dir),
            str(result_dir),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ParityFailed(
                f"the GenAI probe of {model_dir} did not finish within {timeout:.0f} s"
            ) from None
        if done.returncode != 0:
            how = (
                f"was killed by signal {-done.returncode}"
                if done.returncode < 0
                else f"failed (exit {done.returncode})"
            )
            tail = "\n".join(done.stderr.strip().splitlines()[-6:])
            raise ParityFailed(f"ONNX Runtime GenAI {how} loading or running {model_dir}:\n{tail}")
        result = json.loads((result_dir / "result.json").read_text(encoding="utf-8"))
        logits = [np.load(result_dir / f"logits-{i}.npy") for i in range(len(result["conversations"]))]
    return result, logits


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def check_parity(spec: ModelSpec, source: Path, out: Path) -> dict[str, Any]:
    """Compare the built model with the original (see the module docstring); ParityFailed on a gate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, genai_logits = run_probe(out)
    template = read_chat_template(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    cosines: list[float] = []
    greedy_agree: list[int] = []
    for conversation, item, logits in zip(
        PROBE_CONVERSATIONS, result["conversations"], genai_logits, strict=True
    ):
        expected = tokenizer.apply_chat_template(
            conversation, chat_template=template, tokenize=False, add_generation_prompt=True
        )
        if expected != item["rendered"]:
            raise ParityFailed(
                f"chat template renders differently in ONNX Runtime GenAI than in transformers:\n"
                f"  genai:        {item['rendered'][:200]!r}\n  transformers: {expected[:200]!r}"
            )
        candidates = [
            tokenizer(expected, add_special_tokens=special)["input_ids"] for special in (False, True)
        ]
        if item["ids"] not in candidates:
            raise ParityFailed(
                f"GenAI's tokenizer encodes the prompt differently: {len(item['ids'])} ids vs {len(candidates[0])} "
                f"(first ids {item['ids'][:8]} vs {candidates[0][:8]})"
            )
        ids = torch.tensor([item["ids"]])
        with torch.no_grad():
            reference = model(ids).logits[0, -1].float().numpy()
            greedy = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=GREEDY_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or 0,
            )[0, ids.shape[1] :].tolist()
        width = min(len(reference), len(logits))  # the builder may pad the vocabulary
        cosines.append(_cosine(reference[:width], logits[:width]))
        agree = 0
        for ours, theirs in zip(item["greedy"], greedy, strict=False):
            if ours != theirs:
                break
            agree += 1
        greedy_agree.append(agree)
    threshold = (
        spec.parity_min_cosine
        if "parity_min_cosine" in spec.model_fields_set
        else MIN_LOGITS_COSINE[precision(spec)]
    )
    parity: dict[str, Any] = {
        "chat_template": "identical",
        "tokenizer": "identical",
        "logits_min_cosine": round(min(cosines), 5),
        "logits_min_cosine_required": threshold,
        "greedy_prefix_agreement": greedy_agree,
        "greedy_tokens": GREEDY_TOKENS,
        "guided_tokens": result["guided_tokens"],
        "first_token_s": round(max(i["first_token_s"] for i in result["conversations"]), 4),
    }
    if min(cosines) < threshold:
        raise ParityFailed(
            f"next-token logits disagree with transformers: min cosine {min(cosines):.4f} < {threshold} ({precision(spec)})",
            parity=parity,
        )
    try:
        validate_output(ResponseFormat(type="json_schema", schema=SMOKE_SCHEMA), result["guided_text"])
    except AttemptFailed as exc:
        raise ParityFailed(
            f"schema-guided generation did not produce valid JSON: {exc.reason}", parity=parity
        ) from None
    return parity


def compile_generation(spec: ModelSpec, source: Path, out: Path) -> CompileResult:
    """HF folder → GenAI model folder in ``out`` (builder, tokenizer + chat template, parity)."""
    config = _check_source(source)
    build_s = build_genai_model(source, out, precision(spec), options=spec.builder_options)
    _ship_tokenizer(source, out)
    # before the parity run: a model the predict function cannot hold is refused now
    from hflambda.generation.local import OVERHEAD_BYTES

    memory_mb = generation_memory_mb(
        sum(p.stat().st_size for p in out.rglob("*") if p.is_file()), OVERHEAD_BYTES
    )
    check_generation_memory(spec, memory_mb, get_settings())
    started = time.perf_counter()
    parity = check_parity(spec, source, out)
    parity_s = time.perf_counter() - started
    genai_config = json.loads((out / GENAI_CONFIG).read_text(encoding="utf-8"))["model"]
    info = {
        "architecture": (config.get("architectures") or [config.get("model_type")])[0],
        "context_length": genai_config.get("context_length"),
        "vocab_size": genai_config.get("vocab_size"),
        "eos_token_id": genai_config.get("eos_token_id"),
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
        "memory_mb": memory_mb,  # derived resident estimate (the registry's memory_mb overrides it)
    }
    return CompileResult(
        export=export_settings(spec),
        parity=parity,
        info=info,
        timings={"export_s": round(build_s, 3), "parity_s": round(parity_s, 3)},
    )


def main(argv: list[str]) -> int:
    """``main(["probe", <model dir>, <result dir>])``: the GenAI side of parity, in the child process."""
    if len(argv) != 3 or argv[0] != "probe":
        print("usage: probe <model dir> <result dir>", file=sys.stderr)
        return 2
    model_dir, result_dir = Path(argv[1]), Path(argv[2])
    result = probe(model_dir, result_dir)
    (result_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0
