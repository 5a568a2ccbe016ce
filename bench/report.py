"""bench/results.json -> bench/results.md (the table the README links to)."""

from __future__ import annotations

import json
from typing import Any

from bench.common import BENCH, RESULTS


def _f(value: Any, digits: int = 1) -> str:
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return "—"


def render_embeddings(emb: dict[str, Any]) -> list[str]:
    """The embedding peers table (both workloads), ratios, targets and the roofline."""
    m, peers, ratios, roof = emb["machine"], emb["peers"], emb["ratios"], emb["roofline"]
    versions = ", ".join(f"{k} {v}" for k, v in emb["versions"].items())
    out = [
        f"## Embeddings — {emb['model']} ({m['cpus']} CPUs, {m['cpu']}, {m['when']})",
        "",
        f"Each figure from a fresh process, median of {emb['repeats']} interleaved runs. Workloads: batch 32 = {emb['workloads']['batch32']}; "
        f"index = {emb['workloads']['index']}. {versions}. {emb['note']}",
        "",
        "| | batch 32 (sent/s) | single p50 (ms) | index workload (docs/s) | process start → first embedding (s) | mean / min cos vs sentence-transformers (torch) |",
        "|---|---|---|---|---|---|",
    ]
    for row in peers.values():
        out.append(
            f"| {row['label']} | {_f(row['batch32_per_s'], 0)} | {_f(row['single_p50_ms'])} | {_f(row['index_docs_per_s'], 1)} | "
            f"{_f(row['cold_start_s'], 2)} | {_f(row['mean_cosine_vs_st'], 4)} / {_f(row['min_cosine_vs_st'], 4)} |"
        )
    int8 = peers["hflambda-int8"].get("cosine_vs_hflambda_fp32", {})
    best = emb["strongest_peer"]
    out += [
        "",
        f"Strongest peer: batch 32 {peers[best['batch32']]['label']}, index {peers[best['index']]['label']}, cold start {peers[best['cold_start']]['label']}. "
        f"hflambda int8 vs its fp32: mean cos {_f(int8.get('mean'), 4)}, min {_f(int8.get('min'), 4)}. "
        f"Through the Lambda handler (fresh interpreter, wall): {_f(emb['cold_start_handler_s']['median'], 2)} s.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| fp32 batch ≥ 1.15× fastembed (same model) | {_f(ratios['fp32_batch_vs_fastembed'], 2)}× (fastembed on our fused file: {_f(ratios.get('fp32_batch_vs_fastembed_fused'), 2)}×) | {_yes(emb['targets'], 'fp32 batch >= 1.15x fastembed')} |",
        f"| fp32 single p50 ≤ fastembed | {_f(ratios['fp32_single_p50_vs_fastembed'], 2)}× of fastembed's (fused file: {_f(ratios.get('fp32_single_p50_vs_fastembed_fused'), 2)}×) | {_yes(emb['targets'], 'fp32 single p50 <= fastembed')} |",
        f"| int8 batch ≥ 1.5× sentence-transformers int8 ONNX | {_f(ratios['int8_batch_vs_st_int8'], 2)}× | {_yes(emb['targets'], 'int8 batch >= 1.5x sentence-transformers int8 ONNX')} |",
        f"| index workload ≥ 1.5× best peer | {_f(ratios['index_vs_best_peer'], 2)}× (our best; our fp32 {_f(ratios['fp32_index_vs_best_peer'], 2)}× that peer, "
        f"{_f(ratios.get('fp32_index_vs_best_fp32_peer'), 2)}× the best fp32 peer; int8 vs int8 {_f(ratios.get('int8_index_vs_st_int8'), 2)}×) | {_yes(emb['targets'], 'index workload >= 1.5x best peer')} |",
        f"| process start → first embedding ≤ fastest peer | {_f(ratios['cold_start_vs_fastest_peer'], 2)}× of the fastest peer's | {_yes(emb['targets'], 'process start -> first embedding <= fastest peer')} |",
        "",
        f"Roofline: numpy sgemm peaks at {_f(roof['sgemm_gflops'], 0)} GFLOP/s here ({roof['env']}; runs {', '.join(_f(x, 0) for x in roof['sgemm_runs'])}). "
        f"A {roof['sentence_tokens']}-token sentence costs {_f(roof['gflop_per_sentence'], 2)} GFLOP, so batch 32 tops out at {_f(roof['batch32_roofline_per_s'], 0)} sent/s: "
        f"hflambda fp32 runs at {_f(100 * roof['fp32_batch_fraction'], 0)}% of it. Index documents average {_f(roof['document_tokens_mean'], 0)} tokens "
        f"(roofline {_f(roof['index_roofline_docs_per_s'], 1)} docs/s): {_f(100 * roof['fp32_index_fraction'], 0)}%.",
        "",
    ]
    if variants := emb.get("graph_variants"):
        out += [
            "Graph variants (one process, interleaved; session load in a fresh process; cosines vs the unfused fp32 export on the parity texts):",
            "",
            "| graph | session optimization at load | session load (s) | batch 32 (sent/s) | mean / min cos vs fp32 | size (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in variants.items():
            out.append(
                f"| {name} | {row['session_optimization']} | {_f(row['session_load_s'], 3)} | {_f(row['batch32_per_s'], 0)} | "
                f"{_f(row['mean_cosine_vs_fp32'], 4)} / {_f(row['min_cosine_vs_fp32'], 4)} | {_f(row['bytes'] / 1e6, 0)} |"
            )
        out.append("")
    return out


def render_images(img: dict[str, Any]) -> list[str]:
    """The function images: sizes, the serve/warmup ratio, cold start under the Lambda RIE."""
    images, cold = img["images"], img["cold_start"]
    out = [
        f"## Images — base `{img['base']}` ({_f(img['base_mb'], 0)} MB), cold starts under the Lambda RIE (median of {img['repeats']})",
        "",
        "| image | uncompressed (MB) | compressed (MiB, docker save \\| gzip) | vs warmup | RIE init (ms) | first request after init (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, size in images.items():
        ratio = (
            f"{_f(100 * size['ratio_uncompressed'], 0)}% ({_f(100 * size['ratio_compressed'], 0)}% compressed)"
            if "ratio_uncompressed" in size
            else "—"
        )
        out.append(
            f"| {name} | {_f(size['uncompressed_mb'], 0)} | {_f(size['compressed_mib'], 0)} | {ratio} | "
            f"{_f(cold[name]['init_ms'], 0)} (max {_f(cold[name]['init_ms_max'], 0)}) | {_f(cold[name]['first_request_ms'], 0)} |"
        )
    out += [
        "",
        "Largest in the serving image's /var/task (MiB): "
        + ", ".join(f"{n} {_f(m)}" for n, m in img["serve_largest_mib"]),
        "",
        "Largest in the warmup image's /var/task (MiB): "
        + ", ".join(f"{n} {_f(m)}" for n, m in img["warmup_largest_mib"]),
        "",
    ]
    return out


def render_quality(quality: dict[str, Any]) -> list[str]:
    """Real-weight quality: SmolLM2 int4 vs fp32 and the trained classifier's accuracy."""
    out: list[str] = []
    if llm := quality.get("smollm2"):
        out += [
            f"## Quality — {llm['model']}, {llm['prompts']} prompts, {llm['agreement_tokens']} greedy tokens vs transformers fp32",
            "",
            "| graph | logits cosine mean / min | greedy prefix tokens (median) | identical continuations | size (MB) |",
            "|---|---|---|---|---|",
        ]
        for name, row in llm["vs_transformers_fp32"].items():
            out.append(
                f"| {name} | {_f(row['logits_cosine_mean'], 4)} / {_f(row['logits_cosine_min'], 4)} | "
                f"{_f(row['greedy_prefix_tokens_median'], 0)} | {row['identical_continuations']} | {_f(row['bytes'] / 1e6, 0)} |"
            )
        if speed := llm.get("speed"):
            genai = next(v for k, v in speed.items() if k.startswith("onnxruntime_genai"))
            eager = speed["transformers_eager_fp32"]
            out += [
                "",
                f"Speed ({speed['prompt_tokens']}-token prompt, {speed['new_tokens']} new tokens, {speed['threads']} threads): "
                f"GenAI int4 {_f(genai['decode_tok_s'])} tok/s decode, {_f(genai['ttft_s'], 3)} s to first token; "
                f"transformers eager fp32 {_f(eager['decode_tok_s'])} tok/s, {_f(eager['ttft_s'], 3)} s "
                f"({_f(speed['decode_speedup'], 2)}×, {_f(speed['ttft_speedup'], 2)}×).",
            ]
        out.append("")
    if clf := quality.get("classifier"):
        accuracies = {k.removesuffix("_accuracy"): v for k, v in clf.items() if k.endswith("_accuracy")}
        out += [
            f"## Quality — sentiment classifier, {clf['held_out_examples']} held-out sentences",
            "",
            "| model | accuracy |",
            "|---|---|",
            *(f"| {name} | {_f(value * 100)} % |" for name, value in accuracies.items()),
            "",
            f"fp32 and int8 agree on {_f(clf['fp32_int8_agreement'] * 100)} % of the sentences.",
            "",
        ]
    return out


def _yes(targets: dict[str, bool], key: str) -> str:
    return "yes" if targets.get(key) else "no"


def render(results: dict[str, Any]) -> str:
    """Markdown tables for every section present."""
    out = [
        "# Benchmark results",
        "",
        "Produced by `make bench` (ratios against a baseline measured in the same run on the same machine).",
        "",
    ]
    if emb := results.get("embeddings"):
        out += render_embeddings(emb)
    if gen := results.get("generation"):
        g, t = gen["onnxruntime_genai_int4"], gen["transformers_eager_fp32"]
        out += [
            f"## Generation — {gen['model']}, {gen['prompt_tokens']}-token prompt, {gen['new_tokens']} new tokens, {gen['decoding']}",
            "",
            "| | decode tokens/s | time to first token (s) | model size (MB) |",
            "|---|---|---|---|",
            f"| ONNX Runtime GenAI int4 | {_f(g['decode_tok_s'])} | {_f(g['ttft_s'], 2)} | {_f(g['bytes'] / 1e6, 0)} |",
            f"| transformers eager fp32 | {_f(t['decode_tok_s'])} | {_f(t['ttft_s'], 2)} | {_f(t['bytes'] / 1e6, 0)} |",
            "",
            f"Decode {_f(gen['ratios']['decode_speedup'])}× (target ≥ 5×), time to first token {_f(gen['ratios']['ttft_speedup'])}×.",
            "",
        ]
    if idx := results.get("index"):
        out += [
            f"## Indexing — {idx['documents']} short documents, median of {idx['repeats']} runs (docs/s)",
            "",
            "| | hflambda fp32 | hflambda int8 | sentence-transformers + same store |",
            "|---|---|---|---|",
        ]
        for kind, label in (
            ("handler_docs_per_s", "index handler"),
            ("end_to_end_docs_per_s", "queue → searchable (moto SQS + poller)"),
        ):
            for batch, row in idx[kind].items():
                out.append(
                    f"| {label}, {batch.replace('_', ' ')} | {_f(row['hflambda_fp32'], 0)} | {_f(row['hflambda_int8'], 0)} | {_f(row['sentence_transformers'], 0)} |"
                )
        out += [
            "",
            "| search over 100,000 vectors, user filter | exact p50 / p95 (ms) | ANN p50 / p95 (ms) | ANN recall@10 | query embed + search p50 (ms) |",
            "|---|---|---|---|---|",
        ]
        for layout, row in idx["search"].items():
            out.append(
                f"| {layout.replace('_', ' ')} | {_f(row['exact_ms']['p50'])} / {_f(row['exact_ms']['p95'])} | "
                f"{_f(row['ann_ms']['p50'])} / {_f(row['ann_ms']['p95'])} | {_f(row['ann_recall_at_10'], 2)} | {_f(row['embed_query_and_search_ms_p50'])} |"
            )
        out.append("")
    if peers := results.get("peers"):
        out += [
            f"## Peers — same workload ({peers['documents']} documents, {peers['queries']} queries, top-10)",
            "",
            "| | cold start (s) | index (docs/s) | search p50 (ms) | search p95 (ms) | peak RSS (MB) | top-10 overlap vs sentence-transformers |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in peers["results"].items():
            out.append(
                f"| {name} | {_f(row['cold_start_s'], 2)} | {_f(row['index_docs_per_s'], 0)} | {_f(row['search_p50_ms'])} | "
                f"{_f(row['search_p95_ms'])} | {_f(row['peak_rss_mb'], 0)} | {_f(row.get('top10_overlap'), 3)} |"
            )
        out.append("")
    if quality := results.get("quality"):
        out += render_quality(quality)
    if img := results.get("images"):
        out += render_images(img)
    return "\n".join(out)


def main() -> None:
    """Write bench/results.md."""
    results = json.loads(RESULTS.read_text())
    (BENCH / "results.md").write_text(render(results))
    print((BENCH / "results.md").read_text())


if __name__ == "__main__":
    main()
