"""bench/results.json -> bench/results.md (the table the README links to)."""

from __future__ import annotations

import json
from typing import Any

from bench.common import BENCH, RESULTS


def _f(value: Any, digits: int = 1) -> str:
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return "—"


def render(results: dict[str, Any]) -> str:
    """Markdown tables for every section present."""
    out = ["# Benchmark results", "", "Produced by `make bench` (ratios against a baseline measured in the same run on the same machine).", ""]
    if emb := results.get("embeddings"):
        m = emb["machine"]
        cold, warm, batch, cos = emb["cold_start_s"], emb["warm_single_p50_ms"], emb["batch32_sentences_per_s"], emb["mean_cosine_vs_sentence_transformers"]
        out += [
            f"## Embeddings — all-MiniLM-L6-v2 ({m['cpus']} CPUs, {m['cpu']}, {m['when']})",
            "",
            "| | hflambda fp32 | hflambda int8 | sentence-transformers |",
            "|---|---|---|---|",
            f"| fresh process → first embedding (s) | {_f(cold['hflambda'], 2)} (through the Lambda handler) | | {_f(cold['sentence_transformers'], 2)} |",
            f"| warm single sentence p50 (ms) | {_f(warm['hflambda_fp32'])} | {_f(warm['hflambda_int8'])} | {_f(warm['sentence_transformers'])} |",
            f"| batch 32 (sentences/s) | {_f(batch['hflambda_fp32'], 0)} | {_f(batch['hflambda_int8'], 0)} | {_f(batch['sentence_transformers'], 0)} |",
            f"| mean cosine vs sentence-transformers | {_f(cos['hflambda_fp32'], 5)} | {_f(cos['hflambda_int8'], 4)} | 1 |",
            "",
            f"Cold start {_f(emb['ratios']['cold_start_speedup'])}× faster (target ≥ 8×); int8 batch throughput "
            f"{_f(emb['ratios']['int8_throughput_vs_st'])}× sentence-transformers (target ≥ 5×), fp32 {_f(emb['ratios']['fp32_throughput_vs_st'])}×.",
            "",
        ]
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
        for kind, label in (("handler_docs_per_s", "index handler"), ("end_to_end_docs_per_s", "queue → searchable (moto SQS + poller)")):
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
    return "\n".join(out)


def main() -> None:
    """Write bench/results.md."""
    results = json.loads(RESULTS.read_text())
    (BENCH / "results.md").write_text(render(results))
    print((BENCH / "results.md").read_text())


if __name__ == "__main__":
    main()
