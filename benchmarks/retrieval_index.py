"""Index all 70,000 Fashion-MNIST images with a trained retrieval run and time queries: exact vs HNSW (FAISS).

    python benchmarks/retrieval_index.py RUN        # RUN: e.g. runs/bench/retrieval/fashion_mnist

Measures, in one process and one run: the wall time of `build_index` (read the IDX files, embed, index, save) per
backend, and of the `vlfuse index` command (fresh process, so Python start-up included); single-query latency
(encode the text + search the top 10) p50 / p90 per backend; HNSW recall@10 against exact search; and exact vs HNSW
query and build time on random unit vectors of the same width at growing sizes (where `auto` switches backends).

Results: benchmarks/results/retrieval_index.json (cited in the README), with the load average at the start and the
process CPU time of each indexing run (all threads; unlike wall time, not inflated by other jobs on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vlfuse.data.builtin.fashion_mnist import CLASSES, fashion_mnist_caption
from vlfuse.data.captions import caption_templates
from vlfuse.retrieval.index import EmbeddingIndex
from vlfuse.retrieval.run import RetrievalRun
from vlfuse.retrieval.search import build_index
from vlfuse.task import load_run

K = 10


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50_ms": round(statistics.median(ms), 3), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3)}


def query_latency(run: RetrievalRun, index: EmbeddingIndex, queries: list[str], repeats: int) -> dict:
    """End-to-end single-query latency (text → unit vector → top-K), and search alone."""
    total, search_only = [], []
    for _ in range(repeats):
        for q in queries:
            start = time.perf_counter()
            vector = run.embed_texts([q])[0]
            mid = time.perf_counter()
            index.search(vector.reshape(1, -1), K)
            end = time.perf_counter()
            total.append(end - start)
            search_only.append(end - mid)
    return {"query": percentiles(total), "search_only": percentiles(search_only), "queries": len(total)}


def recall_against_exact(ann: EmbeddingIndex, exact: EmbeddingIndex, queries: torch.Tensor) -> float:
    _, got = ann.search(queries, K)
    _, want = exact.search(queries, K)
    return sum(len(set(g) & set(w)) for g, w in zip(got.tolist(), want.tolist(), strict=True)) / (K * len(queries))


def synthetic(dim: int, sizes: list[int], repeats: int = 200) -> list[dict]:
    """Exact vs HNSW on random unit vectors: build seconds, single-query search p50, HNSW recall@10."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        data = F.normalize(torch.randn(n, dim, generator=gen), dim=1)
        queries = F.normalize(torch.randn(repeats, dim, generator=gen), dim=1)
        row: dict = {"items": n}
        indexes = {}
        for backend in ("exact", "hnsw"):
            idx = EmbeddingIndex(dim, kind="image", fingerprint="synthetic", backend=backend)
            start = time.perf_counter()
            idx.add(data, [""] * n)
            build = time.perf_counter() - start
            times = []
            for q in queries:
                tick = time.perf_counter()
                idx.search(q.reshape(1, -1), K)
                times.append(time.perf_counter() - tick)
            row[backend] = {"build_seconds": round(build, 2), "search": percentiles(times)}
            indexes[backend] = idx
        row["hnsw"]["recall_at_10"] = round(recall_against_exact(indexes["hnsw"], indexes["exact"], queries), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path, help="a trained Fashion-MNIST retrieval run directory")
    parser.add_argument("--repeats", type=int, default=20, help="passes over the 50 text queries")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 70_000, 200_000])
    args = parser.parse_args()
    result: dict = {
        "run": str(args.run), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(), "load_average_at_start": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    out = Path("benchmarks/results/retrieval_index.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every stage, so a long run that is stopped keeps what it measured
        out.write_text(json.dumps(result, indent=1) + "\n")

    run = load_run(args.run)
    queries = [fashion_mnist_caption(c, t) for c in CLASSES for t in caption_templates("fashion-mnist", "heldout")]
    with tempfile.TemporaryDirectory() as tmp:
        indexes = {}
        for backend in ("exact", "hnsw"):
            cpu = time.process_time()
            report = build_index(run, "fashion-mnist", Path(tmp) / f"{backend}.index", backend=backend)
            cpu = time.process_time() - cpu
            indexes[backend] = EmbeddingIndex.load(report.path)
            result[f"index_70k_{backend}"] = {
                "items": report.total, "seconds": round(report.seconds, 2),
                "embed_seconds": round(report.embed_seconds, 2), "index_seconds": round(report.index_seconds, 2),
                "file_mb": round(report.path.stat().st_size / 2**20, 1), "cpu_seconds": round(cpu, 2),
            }  # fmt: skip
            result[f"query_70k_{backend}"] = query_latency(run, indexes[backend], queries, args.repeats)
            print(backend, result[f"index_70k_{backend}"], result[f"query_70k_{backend}"], flush=True)
            save()
        images = indexes["exact"].embeddings[torch.randperm(70_000, generator=torch.Generator().manual_seed(1))[:1000]]
        texts = run.embed_texts(queries)
        result["hnsw_recall_at_10_vs_exact"] = {
            "image_queries": round(recall_against_exact(indexes["hnsw"], indexes["exact"], images), 4),
            "text_queries": round(recall_against_exact(indexes["hnsw"], indexes["exact"], texts), 4),
        }
        command = [sys.executable, "-m", "vlfuse.cli", "index", str(args.run), "fashion-mnist", "-o",
                   str(Path(tmp) / "cli.index")]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        result["cli_index_70k_auto_seconds"] = round(time.perf_counter() - start, 2)
        result["cli_index_output"] = proc.stdout.strip()
        save()
    result["synthetic"] = synthetic(run.model.embed_dim, args.sizes)
    save()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
