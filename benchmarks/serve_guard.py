"""`vlfuse serve` under overload and under slow clients, from a second process on loopback. Measures, in one run:

- overload: `--clients` (200) concurrent clients posting /v1/predict for `--seconds`, against a server with the
  default bounded queue (`--max-queue 128`) and, side by side, one with a practically unbounded queue and one
  with `--max-queue 32`. Clients that get a 503 wait its Retry-After, as a well-behaved client does. Reported:
  latency of the admitted requests (p50/p90/p99), requests admitted and refused, throughput;
- slow clients: `--slow` (2,000) connections that trickle one header byte a second (slowloris), opened against a
  server with the default guards (1,000 connections, 10 s header timeout); while they are held, one ordinary client
  sends requests one at a time on a kept-alive connection. Reported: how many slow connections the server held
  meanwhile, how many it refused (503) or closed (408, and after how long), and the latency of the ordinary
  client's requests (target p99 < 50 ms).

Results: benchmarks/results/serve_guard.json. Needs a trained classification run (`make main` writes runs/main).

    python benchmarks/serve_guard.py [--run runs/main] [--clients 200] [--seconds 20] [--slow 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import BOUNDARY, Server, easy_vqa_bodies  # noqa: E402

HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ms = np.array(seconds) * 1000
    return {f"p{q}": round(float(np.percentile(ms, q)), 2) for q in (50, 90, 99)} | {"max": round(float(ms.max()), 2)}


async def overload(url: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    admitted: list[float] = []
    refused = errors = 0
    retry_after: list[int] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        start = time.perf_counter()
        stop_at = start + seconds

        async def client(k: int) -> None:
            nonlocal refused, errors
            i = k
            while time.perf_counter() < stop_at:
                sent = time.perf_counter()
                try:
                    async with session.post(f"{url}/v1/predict", data=bodies[i % len(bodies)], headers=HEADERS) as r:
                        await r.read()
                        status, wait = r.status, r.headers.get("retry-after")
                except (TimeoutError, aiohttp.ClientError):
                    errors += 1
                    continue
                i += clients
                if status == 200:
                    admitted.append(time.perf_counter() - sent)
                elif status == 503:
                    refused += 1
                    retry_after.append(int(wait or 1))
                    await asyncio.sleep(int(wait or 1))
                else:
                    errors += 1

        await asyncio.gather(*[client(k) for k in range(clients)])
        elapsed = time.perf_counter() - start
    return {
        "clients": clients, "seconds": round(elapsed, 2), "admitted": len(admitted), "refused_503": refused,
        "errors": errors, "admitted_per_s": round(len(admitted) / elapsed, 1),
        "admitted_latency_ms": percentiles(admitted),
        "retry_after_s": {"min": min(retry_after), "max": max(retry_after)} if retry_after else None,
    }  # fmt: skip


async def slow_client(host: str, port: int, results: dict) -> None:
    """One slowloris connection: a request line, then one header byte a second until the server answers or closes."""
    opened = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        results["connect_failed"] += 1
        return
    results["open"] += 1
    try:
        writer.write(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        while True:
            try:
                answer = await asyncio.wait_for(reader.read(4096), timeout=1.0)
            except TimeoutError:
                writer.write(b"X")  # one more byte of a header that never ends
                await writer.drain()
                continue
            status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
            results["answers"][status] = results["answers"].get(status, 0) + 1
            if status == "408":
                results["closed_after_s"].append(time.perf_counter() - opened)
            return
    except (ConnectionError, OSError):
        results["answers"]["reset"] = results["answers"].get("reset", 0) + 1
    finally:
        results["open"] -= 1
        writer.close()


async def slow_clients(url: str, bodies: list[bytes], count: int, seconds: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    results: dict = {"connect_failed": 0, "open": 0, "answers": {}, "closed_after_s": []}
    tasks = [asyncio.create_task(slow_client(host, int(port), results)) for _ in range(count)]
    await asyncio.sleep(2.0)  # every slow connection is open (or refused) and trickling
    latencies: list[float] = []
    failures = 0
    held = [results["open"]]
    async with aiohttp.ClientSession() as session:
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            try:
                async with session.post(f"{url}/v1/predict", data=bodies[len(latencies) % len(bodies)],
                                        headers=HEADERS) as r:  # fmt: skip
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                failures += 1
            held.append(results["open"])
    await asyncio.gather(*tasks)
    closed = results["closed_after_s"]
    return {
        "slow_connections_opened": count,
        "slow_connections_held_while_serving": {"min": min(held), "max": max(held)},
        "refused_503": results["answers"].get("503", 0), "timed_out_408": len(closed),
        "closed_after_s": {"min": round(min(closed), 1), "max": round(max(closed), 1)} if closed else None,
        "other_endings": {k: v for k, v in results["answers"].items() if k not in ("503", "408")},
        "ordinary_requests": len(latencies), "ordinary_failures": failures,
        "ordinary_latency_ms": percentiles(latencies),
        "target_p99_ms": 50, "target_met": bool(latencies) and percentiles(latencies)["p99"] < 50 and not failures,
    }  # fmt: skip


async def with_server(run: str, extra: list[str], phase) -> dict:
    server = Server(run, "torch", extra)
    try:
        async with aiohttp.ClientSession() as session:
            await server.wait_ready(session, timeout=120)
        result = await phase(server.url)
        result["server"] = " ".join(["vlfuse serve", run, *extra])
        return result
    finally:
        server.stop()


async def main_async(args: argparse.Namespace) -> dict:
    bodies = easy_vqa_bodies(64)
    bounded = await with_server(args.run, [], lambda url: overload(url, bodies, args.clients, args.seconds))
    unbounded = await with_server(args.run, ["--max-queue", "1000000"],
                                  lambda url: overload(url, bodies, args.clients, args.seconds))  # fmt: skip
    small = await with_server(args.run, ["--max-queue", "32"],
                              lambda url: overload(url, bodies, args.clients, args.seconds))  # fmt: skip
    slow = await with_server(args.run, [], lambda url: slow_clients(url, bodies, args.slow, args.slow_seconds))
    return {"overload_bounded_queue": bounded, "overload_unbounded_queue": unbounded,
            "overload_queue_32": small, "slow_clients": slow}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="runs/main")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument("--slow-seconds", type=float, default=6.0)
    parser.add_argument("--out", default="benchmarks/results/serve_guard.json")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    result["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, client: aiohttp "
                         f"{aiohttp.__version__} in a second process")  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
