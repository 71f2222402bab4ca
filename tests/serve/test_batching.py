"""Micro-batching: concurrent requests share model calls, give the same answers as one at a time, and a lone
request does not wait."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from live_server import easy_vqa_image, live_server

from vlfuse.api import load_run
from vlfuse.data.images import load_image
from vlfuse.serve import ServeLimits, create_app
from vlfuse.serve.batcher import MicroBatcher


class Recorder:
    """A batch function that doubles its inputs and records the size of every call."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(len(items))
        time.sleep(0.01)  # a model call takes time, during which new requests queue up
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot process {self.fail_on}")
        return [2 * i for i in items]


async def announced_submit(batcher: MicroBatcher, item: int, delay: float = 0.0) -> int:
    with batcher.reserve() as ticket:
        await asyncio.sleep(delay)  # e.g. decoding the upload
        return await batcher.submit(item, ticket)


def test_concurrent_submits_share_calls_and_respect_max_batch():
    fn = Recorder()

    async def main():
        batcher = MicroBatcher(fn, max_batch=4, max_wait_s=0.5)
        await batcher.start()
        try:
            results = await asyncio.gather(*[announced_submit(batcher, i, delay=0.001 * i) for i in range(10)])
        finally:
            await batcher.stop()
        return results, batcher.stats

    results, stats = asyncio.run(main())
    assert results == [2 * i for i in range(10)]
    assert sum(fn.calls) == 10 and max(fn.calls) == 4 and len(fn.calls) == 3  # 4 + 4 + 2
    assert stats.requests == 10 and stats.batches == 3 and stats.largest_batch == 4


def test_lone_requests_do_not_wait():
    fn = Recorder()

    async def main():
        batcher = MicroBatcher(fn, max_batch=32, max_wait_s=2.0)
        await batcher.start()
        start = time.perf_counter()
        try:
            results = [await announced_submit(batcher, i) for i in range(3)]
        finally:
            await batcher.stop()
        return results, time.perf_counter() - start

    results, seconds = asyncio.run(main())
    assert results == [0, 2, 4] and fn.calls == [1, 1, 1]
    assert seconds < 2.0  # not one 2-second wait: nobody else was announced


def test_a_failing_batch_fails_its_callers_and_the_loop_goes_on():
    fn = Recorder(fail_on=3)

    async def main():
        batcher = MicroBatcher(fn, max_batch=8, max_wait_s=0.5)
        await batcher.start()
        try:
            failed = await asyncio.gather(*[announced_submit(batcher, i) for i in (1, 3)], return_exceptions=True)
            later = await announced_submit(batcher, 5)
        finally:
            await batcher.stop()
        return failed, later

    failed, later = asyncio.run(main())
    assert all(isinstance(f, ValueError) and "cannot process 3" in str(f) for f in failed)
    assert later == 10


@pytest.fixture(scope="module")
def batching_server(tiny_run_dir):
    run = load_run(tiny_run_dir)
    limits = ServeLimits(max_batch=8, max_wait_ms=50)  # a generous wait: batches form even on a busy machine
    with live_server(create_app(run, limits=limits)) as url:
        yield url, run


def test_concurrent_requests_are_batched_and_match_sequential_answers(batching_server):
    url, run = batching_server
    questions = ["what color is the shape?", "what shape is this?", "is there a circle?", "is the shape blue?"]
    requests = []  # (image path or None, text or None); some rows lack one input, so batches mix both kinds
    for i in range(24):
        image = easy_vqa_image(i % 6) if i % 8 != 7 else None
        text = questions[i % 4] if i % 8 != 3 else None
        requests.append((image, text))
    size = run.cfg.data.image_size
    expected = [
        run.predict_proba([load_image(im, size=size)] if im else None, [t] if t else None)[0]  # (K,) one at a time
        for im, t in requests
    ]

    def send(client: httpx.Client, image, text) -> torch.Tensor:
        files = {"image": (image.name, image.read_bytes(), "image/png")} if image else None
        data = {"top_k": str(len(run.label_names)), **({"text": text} if text else {})}
        response = client.post("/v1/predict", files=files, data=data, timeout=60)
        assert response.status_code == 200, response.text
        probs = torch.zeros(len(run.label_names))  # (K,)
        for p in response.json()["predictions"]:
            probs[run.label_names.index(p["label"])] = p["probability"]
        return probs

    with httpx.Client(base_url=url) as client:
        before = client.get("/v1/info").json()["batching"]["predict"]
        with ThreadPoolExecutor(max_workers=12) as pool:
            got = list(pool.map(lambda r: send(client, *r), requests))
        after = client.get("/v1/info").json()["batching"]["predict"]
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-5)
    requests_served = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert requests_served == 24
    assert batches < 24 and after["largest_batch"] > 1, after  # requests really shared model calls
    assert after["largest_batch"] <= 8
