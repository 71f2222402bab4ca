"""Commands that generate text with a language bridge: ask, caption."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vlfuse.cli.app import app, err_console
from vlfuse.cli.ood import Strict, check_far


def _generation(strategy: str, max_new_tokens: int | None, temperature: float, seed: int | None, beams: int):
    from vlfuse.bridge.generate import GenerationConfig

    values = {"strategy": strategy, "temperature": temperature, "seed": seed, "num_beams": beams}
    if max_new_tokens is not None:
        values["max_new_tokens"] = max_new_tokens
    return GenerationConfig(**values)


def _load(run: str, operation: str):
    """The bridge run, with one transient status line while its language model loads (seconds)."""
    from vlfuse.task import load_run_for

    with err_console.status(f"loading {run} …"):
        return load_run_for(run, operation)


GenStrategy = Annotated[str, typer.Option(help="greedy, sample or beam")]
GenTokens = Annotated[int | None, typer.Option(help="most tokens to generate (default: the run's setting)")]
GenTemperature = Annotated[float, typer.Option(help="sample: temperature")]
GenSeed = Annotated[int | None, typer.Option(help="sample: seed for repeatable sampling")]
GenBeams = Annotated[int, typer.Option(help="beam: number of beams")]


@app.command()
def ask(
    run: Annotated[str, typer.Argument(help="bridge or photo run directory, or a shipped one: easy-vqa-bridge, "
                                            "photo, photo-bridge")],
    image: Annotated[Path, typer.Argument(help="image file")],
    question: Annotated[str, typer.Argument(help="the question, in words")],
    strategy: GenStrategy = "greedy",
    max_new_tokens: GenTokens = None,
    temperature: GenTemperature = 1.0,
    seed: GenSeed = None,
    beams: GenBeams = 3,
    stream: Annotated[bool, typer.Option(help="print the answer token by token as it is generated")] = True,
    json_: Annotated[bool, typer.Option("--json", help="print one JSON object {image, question, answer, ood}")] = False,
    strict: Strict = False,
) -> None:
    """Answer a question about an image in words, with the run's language model."""
    from vlfuse.data.text import require_text

    question = require_text(question, "the question")  # before the seconds of loading the language model
    bridge = _load(run, "ask")
    gen = _generation(strategy, max_new_tokens or bridge.cfg.generation.max_new_tokens, temperature, seed, beams)
    images = bridge.load_images([image])
    ood = check_far(bridge, run, [str(image)], images, strict=strict)[0]
    stream = stream and not json_
    on_text = (lambda _row, piece: print(piece, end="", flush=True)) if stream else None
    answer = bridge.ask(images, [question], gen, on_text=on_text)[0]
    if json_:
        print(json.dumps({"image": str(image), "question": question, "answer": answer, "ood": ood}))
        return
    print("" if stream else answer)


@app.command()
def caption(
    run: Annotated[str, typer.Argument(help="bridge or photo run directory, or a shipped one: easy-vqa-bridge, "
                                            "photo, photo-bridge")],
    images: Annotated[list[Path], typer.Argument(help="image files")],
    strategy: GenStrategy = "greedy",
    max_new_tokens: GenTokens = None,
    temperature: GenTemperature = 1.0,
    seed: GenSeed = None,
    beams: GenBeams = 3,
    json_: Annotated[bool, typer.Option("--json", help="print JSON lines {image, caption, ood}")] = False,
    strict: Strict = False,
) -> None:
    """Describe images in words, with the run's language model (one line per image)."""
    bridge = _load(run, "caption")
    gen = _generation(strategy, max_new_tokens or bridge.cfg.generation.max_new_tokens, temperature, seed, beams)
    decoded = bridge.load_images(images)
    oods = check_far(bridge, run, [str(p) for p in images], decoded, strict=strict)
    captions = bridge.caption(decoded, gen)
    for path, text, ood in zip(images, captions, oods, strict=True):
        print(json.dumps({"image": str(path), "caption": text, "ood": ood}) if json_ else f"{path}: {text}")
