"""`vlfuse export` and `vlfuse serve` end to end as real subprocesses: export with int8, serve the int8 graph with
limits given as options, answer a request, refuse one over a limit."""

import subprocess
import sys
import time

import httpx
import pytest
from live_server import easy_vqa_image, free_port


def vlfuse(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "vlfuse.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def served_export(tiny_run_dir, tmp_path):
    out = tmp_path / "export"
    proc = vlfuse("export", tiny_run_dir, "--format", "onnx", "--quantize", "int8", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exported:" in proc.stdout and (out / "model.int8.onnx").is_file()
    port = free_port()
    argv = ["serve", out, "--backend", "onnx-int8", "--port", port, "--max-text-chars", 40, "--log-level", "warning"]
    server = subprocess.Popen([sys.executable, "-m", "vlfuse.cli", *map(str, argv)], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the server did not start within 120 s"
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_export_and_serve_the_int8_model(served_export):
    image = easy_vqa_image(0)
    with httpx.Client(base_url=served_export, timeout=30) as client:
        files = {"image": (image.name, image.read_bytes(), "image/png")}
        answer = client.post("/v1/predict", files=files, data={"text": "what color is the shape?"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["backend"] == "onnx-int8" and len(answer.json()["predictions"]) == 5
        too_long = client.post("/v1/predict", data={"text": "x" * 41})  # --max-text-chars 40
        assert too_long.status_code == 422 and "at most 40 characters" in too_long.json()["error"]["message"]
        assert client.get("/v1/info").json()["limits"]["max_text_chars"] == 40


def test_cli_errors_are_clear(tiny_run_dir, tmp_path):
    proc = vlfuse("serve", tiny_run_dir, "--backend", "tensorflow")
    assert proc.returncode == 2 and "unknown backend 'tensorflow'" in proc.stderr
    proc = vlfuse("serve", tmp_path, "--backend", "onnx")
    assert proc.returncode == 2 and "no ONNX export" in proc.stderr and "vlfuse export" in proc.stderr
