"""The LLM bridge, measured: generated answers and captions on the easy-VQA test split, `ask` latency, and generation
speed side by side with plain transformers `generate` on the same model and prompt.

    python benchmarks/bridge.py [--run easy-vqa-bridge] [--questions N] [--captions N] [--reevaluate]

- answers: exact match and normalised accuracy of greedy answers (all 9,673 test questions unless --questions);
- captions: how often the generated caption names the image's colour and shape (every test image whose colour and
  shape the questions give), plus BLEU-4 / CIDEr / ROUGE-L. Training already evaluates the whole test split with the
  same weights and greedy decoding (deterministic), so those figures are read from the run's metrics.json when they
  cover the requested questions and captions; --reevaluate generates them again;
- latency: wall time of one `ask` (image file → answer: decode, encoder, projector, generation), median of 10 warm
  calls;
- tokens/s: ours vs `transformers` `generate(inputs_embeds=...)` on the same prompt embeddings, greedy, the same
  number of new tokens (the end token is ignored so both produce exactly --tokens tokens), same threads, same run.

Results: benchmarks/results/bridge.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def tokens_per_second(bridge, images, prompts, new_tokens: int) -> dict:
    from vlfuse.bridge.generate import GenerationConfig, generate

    visual = bridge.visual_tokens(images)  # (B, N, D)
    embeds, mask = bridge.prompt_embeddings(visual, prompts)  # (B, T, H), (B, T)
    lm = bridge.model.lm
    gen = GenerationConfig(max_new_tokens=new_tokens)
    timings = {"ours": [], "transformers": []}
    for _ in range(3):
        start = time.perf_counter()
        ours = generate(lm, embeds, mask, gen, eos_id=-1)  # -1: never stop early
        timings["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.inference_mode():
            theirs = lm.generate(
                inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                do_sample=False, pad_token_id=bridge.model.pad_id,
            )  # fmt: skip
        timings["transformers"].append(time.perf_counter() - start)
    produced = len(images) * new_tokens
    assert all(len(row) == new_tokens for row in ours) and theirs.shape[1] >= new_tokens
    # transformers' min_new_tokens forbids the end token, so after a row's natural end the two runs may differ;
    # up to it (the text a user gets) they must be identical
    eos = bridge.model.eos_id
    ends = [row.index(eos) if eos in row else len(row) for row in ours]
    same = all(o[:k] == t[:k] for o, t, k in zip(ours, theirs[:, -new_tokens:].tolist(), ends, strict=True))
    best = {k: min(v) for k, v in timings.items()}
    return {
        "batch": len(images),
        "new_tokens": new_tokens,
        "ours_tokens_per_s": round(produced / best["ours"], 1),
        "transformers_tokens_per_s": round(produced / best["transformers"], 1),
        "ours_vs_transformers": round(best["transformers"] / best["ours"], 2),
        "identical_tokens_until_end": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="easy-vqa-bridge", help="bridge run directory or shipped name")
    parser.add_argument("--questions", type=int, default=None, help="test questions (default: all)")
    parser.add_argument("--captions", type=int, default=None, help="test images to caption (default: all)")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens for the tokens/s comparison")
    parser.add_argument("--reevaluate", action="store_true", help="generate the test answers/captions again")
    parser.add_argument("--out", default="benchmarks/results/bridge.json")
    args = parser.parse_args()
    from easy_vqa import get_test_image_paths

    from vlfuse.bridge.data import load_bridge_split
    from vlfuse.bridge.evaluate import evaluate_test, split_features
    from vlfuse.task import load_run

    bridge = load_run(args.run)
    cfg = bridge.cfg.model_copy(
        update={
            "eval": bridge.cfg.eval.model_copy(
                update={"test_questions": args.questions, "test_captions": args.captions}
            )
        }  # fmt: skip
    )
    test = load_bridge_split(cfg.data, "test", cfg.caption_prompt, n_templates=cfg.caption_templates)
    metrics_file = bridge.path / "metrics.json"
    trained = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    images = len(test.captions.one_per_image())  # captions: one per image
    wanted = {"vqa": min(args.questions or len(test.questions), len(test.questions)),
              "caption": min(args.captions or images, images)}  # fmt: skip
    recorded = trained.get("test", {})
    if not args.reevaluate and all(recorded.get(objective, {}).get("samples") == n for objective, n in wanted.items()):
        quality, quality_source = recorded, f"{metrics_file.name} of the run (written by its training command)"
    else:
        visual = split_features(bridge.encoder, test, cfg)
        quality, quality_source = evaluate_test(bridge.model, cfg, test, visual), "this run"

    paths = get_test_image_paths()
    image, question = paths[0], "what color is the shape?"
    bridge.ask(bridge.load_images([image]), [question])  # warm-up
    latencies = []
    for _ in range(10):
        start = time.perf_counter()
        bridge.ask(bridge.load_images([image]), [question])
        latencies.append(time.perf_counter() - start)

    images = bridge.load_images([paths[i] for i in range(8)])
    speed = {
        "batch_1": tokens_per_second(bridge, images[:1], ["Describe the image."], args.tokens),
        "batch_8": tokens_per_second(bridge, images, ["Describe the image."] * 8, args.tokens),
    }
    result = {
        "run": str(args.run),
        "answers": quality.get("vqa"),
        "captions": quality.get("caption"),
        "quality_measured_by": quality_source,
        "ask_latency_s_median": round(statistics.median(latencies), 3),
        "ask_latency_target_s": 1.5,
        "generation_speed": speed,
        "train_seconds": trained.get("train_seconds"),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
