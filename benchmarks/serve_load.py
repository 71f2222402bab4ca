"""Load test of `vlfuse serve` from a second process on loopback. Measures, in one run:

- sequential: one client sending one request at a time (the no-concurrency baseline),
- concurrent: `--clients` clients at once against the same server (micro-batching on, the default settings),
- concurrent, no batching: the same clients against a server started with `--max-batch 1` (to tell the gain of
  batching from the gain of overlapping HTTP work with model calls),
- baseline: one client at a time against a server on `--baseline-backend` (default torch, the server's default
  before `auto`), to show what the default backend adds,

each with request count, errors (non-200 answers, transport failures, or an answer that differs from the one the
same input got in the sequential phase), throughput, p50/p90/p99 latency and the server's mean batch size. Target:
concurrent throughput >= 3x sequential throughput (same backend), with 0 errors. Results:
benchmarks/results/serve_load.json

    python benchmarks/serve_load.py [--run runs/main] [--clients 16] [--seconds 30] [--backend auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import torch

BOUNDARY = "vlfuse-load-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(image: bytes, text: str) -> bytes:
    """One request body, encoded once up front so that the client spends little CPU per request."""
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="shape.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + image
        + f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n3\r\n--{BOUNDARY}--\r\n'.encode()
    )


def easy_vqa_bodies(n: int) -> list[bytes]:
    """n (image, question) pairs from the easy-VQA test set, as multipart bodies."""
    from easy_vqa import get_test_image_paths, get_test_questions

    questions, _, image_ids = get_test_questions()
    paths = get_test_image_paths()
    step = max(1, len(questions) // n)
    return [multipart(Path(paths[image_ids[i]]).read_bytes(), questions[i]) for i in range(0, step * n, step)]


class Server:
    """`vlfuse serve` in a subprocess on a free loopback port."""

    def __init__(self, run: str, backend: str, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "vlfuse.cli", "serve", run, "--port", str(self.port), "--backend", backend]
        self.argv = argv + ["--log-level", "warning", *extra]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                async with session.get(f"{self.url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        raise TimeoutError("the server did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def batching_stats(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(f"{url}/v1/info") as response:
        return (await response.json())["batching"]["predict"]


async def load_phase(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], *, clients: int, seconds: float,
    expected: dict[int, str] | None,
) -> dict:  # fmt: skip
    """`clients` concurrent loops posting the bodies round-robin for `seconds`; latency of every request."""
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    latencies: list[float] = []
    errors: list[str] = []
    answers: dict[int, str] = {}
    before = await batching_stats(session, url)
    start = time.perf_counter()
    stop_at = start + seconds

    async def client(k: int) -> None:
        i = k
        while time.perf_counter() < stop_at:
            body_index = i % len(bodies)
            sent = time.perf_counter()
            try:
                async with session.post(f"{url}/v1/predict", data=bodies[body_index], headers=headers) as response:
                    payload = await response.json()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as err:
                errors.append(f"{type(err).__name__}: {err}")
                continue
            latencies.append(time.perf_counter() - sent)
            if status != 200:
                errors.append(f"HTTP {status}: {payload}")
            else:
                top = payload["predictions"][0]["label"]
                answers.setdefault(body_index, top)
                if expected is not None and body_index in expected and expected[body_index] != top:
                    errors.append(f"body {body_index}: answer {top!r} differs from {expected[body_index]!r}")
            i += clients

    await asyncio.gather(*[client(k) for k in range(clients)])
    elapsed = time.perf_counter() - start
    after = await batching_stats(session, url)
    ms = np.array(latencies) * 1000
    served, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:5],
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "latency_ms": {q: round(float(np.percentile(ms, int(q[1:]))), 2) for q in ("p50", "p90", "p99")}
        | {"max": round(float(ms.max()), 2)},
        "mean_batch": round(served / batches, 2) if batches else 0.0,
        "largest_batch": after["largest_batch"],
        "answers": answers,
    }


async def measure(args: argparse.Namespace) -> dict:
    bodies = easy_vqa_bodies(64)
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=args.clients)
    results: dict = {}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        server = Server(args.run, args.backend, [])
        try:
            await server.wait_ready(session, args.startup_timeout)
            await load_phase(session, server.url, bodies, clients=1, seconds=args.warmup, expected=None)  # warm-up
            sequential = await load_phase(
                session, server.url, bodies, clients=1, seconds=args.sequential_seconds, expected=None
            )
            expected = sequential.pop("answers")
            concurrent = await load_phase(
                session, server.url, bodies, clients=args.clients, seconds=args.seconds, expected=expected
            )
            concurrent.pop("answers")
            results["server"] = " ".join(server.argv[1:]).replace(f"--port {server.port}", "--port PORT")
        finally:
            server.stop()
        no_batching = None
        if args.no_batching_seconds > 0:
            server = Server(args.run, args.backend, ["--max-batch", "1"])
            try:
                await server.wait_ready(session, args.startup_timeout)
                await load_phase(session, server.url, bodies, clients=1, seconds=args.warmup, expected=None)
                no_batching = await load_phase(
                    session, server.url, bodies, clients=args.clients, seconds=args.no_batching_seconds,
                    expected=expected,
                )  # fmt: skip
                no_batching.pop("answers")
            finally:
                server.stop()
        baseline = None
        if args.baseline_seconds > 0:
            server = Server(args.run, args.baseline_backend, [])
            try:
                await server.wait_ready(session, args.startup_timeout)
                await load_phase(session, server.url, bodies, clients=1, seconds=args.warmup, expected=None)
                baseline = await load_phase(
                    session, server.url, bodies, clients=1, seconds=args.baseline_seconds, expected=expected
                )
                baseline.pop("answers")
                baseline["backend"] = args.baseline_backend
            finally:
                server.stop()
    speedup = concurrent["throughput_rps"] / sequential["throughput_rps"]
    results |= {
        "run": args.run,
        "backend": args.backend,
        "sequential": sequential,
        "concurrent": concurrent,
        "concurrent_no_batching": no_batching,
        "sequential_baseline": baseline,
        "speedup_concurrent_vs_sequential": round(speedup, 2),
        "speedup_concurrent_vs_baseline_sequential": round(concurrent["throughput_rps"] / baseline["throughput_rps"], 2)
        if baseline
        else None,
        "target_speedup": 3.0,
        "target_met": bool(speedup >= 3.0 and concurrent["errors"] == 0 and sequential["errors"] == 0),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, client: aiohttp "
        f"{aiohttp.__version__} in a second process",
        "note": args.note,
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/main")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "onnx-int8"])
    parser.add_argument("--baseline-backend", default="torch", choices=["auto", "torch", "onnx", "onnx-int8"])
    parser.add_argument("--baseline-seconds", type=float, default=15, help="0 skips that phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30, help="concurrent phase")
    parser.add_argument("--sequential-seconds", type=float, default=15)
    parser.add_argument("--no-batching-seconds", type=float, default=15, help="0 skips that phase")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--startup-timeout", type=float, default=300, help="seconds to wait for each server")
    parser.add_argument("--note", default="", help="recorded in the results, e.g. the machine's load")
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
