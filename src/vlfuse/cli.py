"""The `vlfuse` command line: train, evaluate, predict, list, data show."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vlfuse.errors import VLFuseError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="vlfuse: vision-language fusion toolkit")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="experiment YAML (omit with --resume)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a key: --set train.epochs=3")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="where to write the run (default runs/<config>-<time>)")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue this run directory from its last checkpoint")] = None,
    nproc: Annotated[int, typer.Option(help="processes (DistributedDataParallel via torchrun)")] = 1,
    stop_after_epochs: Annotated[int | None, typer.Option(hidden=True)] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run in --run-dir")] = False,
    verbose: bool = False,
) -> None:
    """Train a model; writes a run directory with metrics, plots, report and weights."""
    from vlfuse.api import default_run_dir
    from vlfuse.config import load_config
    from vlfuse.train.distributed import launch
    from vlfuse.train.experiment import train_experiment
    from vlfuse.train.progress import ProgressBar

    _setup_logging(verbose)
    source = resume / "config.yaml" if resume is not None else config
    if source is not None and _config_task(source) == "bridge":
        _train_bridge(source, set_, run_dir or resume or default_run_dir(source), resume is not None, overwrite)
        return
    if resume is not None:
        target = resume
        cfg = load_config(resume / "config.yaml", set_ or None)
    elif config is None:
        raise typer.BadParameter("give a CONFIG file or --resume RUN")
    else:
        cfg = load_config(config, set_ or None)
        target = run_dir or default_run_dir(config)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        argv = ["train", *([str(config)] if config else []), "--run-dir", str(target)]
        argv += [f"--set={s}" for s in set_ or []]
        argv += ["--resume", str(resume)] if resume else []
        argv += ["--stop-after-epochs", str(stop_after_epochs)] if stop_after_epochs else []
        argv += ["--overwrite"] if overwrite else []
        raise typer.Exit(launch(nproc, argv))
    summary = train_experiment(
        cfg,
        target,
        resume=resume is not None,
        stop_after_epochs=stop_after_epochs,
        callbacks=[ProgressBar()],
        overwrite=overwrite,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if summary["skipped_rows"]:
        console.print(f"[yellow]{summary['skipped_rows']} bad row(s) skipped (data.on_error=skip); first:[/yellow]")
        for line in summary["first_skipped"]:
            console.print(f"  {line}")
    if not summary["complete"]:
        console.print(f"stopped after epoch {summary['epochs']}; continue with: vlfuse train --resume {target}")
        return
    if summary.get("task") == "retrieval":
        _print_retrieval_metrics(summary["metrics"])
    else:
        _print_metrics(summary["metrics"])
    console.print(f"run directory: [bold]{target}[/bold]  (report: {target / 'report.md'})")


def _config_task(path: Path) -> str | None:
    """The top-level `task` key of a config file (None when absent or unreadable: load_config reports it)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return raw.get("task") if isinstance(raw, dict) else None


def _train_bridge(config: Path, set_: list[str] | None, target: Path, resume: bool, overwrite: bool) -> None:
    """`vlfuse train` for a `task: bridge` config: train the stages, then print the test metrics."""
    from vlfuse.config import load_config
    from vlfuse.lm.experiment import train_bridge

    cfg = load_config(config, set_ or None)
    summary = train_bridge(cfg, target, resume=resume, overwrite=overwrite)
    _print_bridge_test(summary)
    console.print(f"trained in {summary['train_seconds']} s; run directory: [bold]{target}[/bold]")


def _print_bridge_test(summary: dict) -> None:
    for task, values in summary["test"].items():
        shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        console.print(f"test {task}: {shown}")


def _print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    table = Table(title="metrics")
    keys = sorted({k for m in metrics.values() for k in m})
    table.add_column("split")
    for k in keys:
        table.add_column(k)
    for split, values in metrics.items():
        table.add_row(
            split, *[f"{values[k]:.4f}" if isinstance(values.get(k), float) else str(values.get(k)) for k in keys]
        )
    console.print(table)


def _print_retrieval_metrics(metrics: dict[str, dict[str, float]]) -> None:
    table = Table(title="retrieval (recall@k, median rank) and zero-shot accuracy")
    columns = ["t2i_r1", "t2i_r5", "t2i_r10", "t2i_median_rank", "i2t_r1", "i2t_r5", "i2t_r10", "i2t_median_rank"]
    for name in ["split", *columns]:
        table.add_column(name)
    for split, values in metrics.items():
        if "t2i_r1" in values:
            table.add_row(split, *[f"{values[c]:.4f}" if "_r" in c and "rank" not in c else f"{values[c]:g}"
                                   for c in columns])  # fmt: skip
    console.print(table)
    for split, values in metrics.items():
        if "accuracy" in values:
            console.print(f"{split}: accuracy {values['accuracy']:.4f} on {values['samples']} images")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="run directory")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness",
            help="score with each modality missing and under image/text corruptions instead; writes "
            "robustness.json, robustness.md and plots/robustness.png into the run directory",
        ),
    ] = False,
    tasks: Annotated[
        str | None, typer.Option(help="bridge runs: comma-separated test tasks to score (vqa, caption; default both)")
    ] = None,
) -> None:
    """Score a trained run on a split of its data (--robustness: with missing and corrupted inputs).

    A bridge run (task: bridge) is scored on its test split: generated answers and captions; its metrics.json and
    report are updated (--tasks vqa,caption picks which).
    """
    from vlfuse.api import load_run

    if _config_task(run / "config.yaml") == "bridge":
        from vlfuse.lm.experiment import TEST_TASKS, evaluate_bridge_run

        wanted = tuple(t.strip() for t in tasks.split(",")) if tasks else TEST_TASKS
        unknown = set(wanted) - set(TEST_TASKS)
        if unknown or split != "test":
            raise typer.BadParameter(f"a bridge run is scored on the test split with --tasks from {TEST_TASKS}; got "
                                     f"split={split}, tasks={','.join(wanted)}")  # fmt: skip
        summary = evaluate_bridge_run(run, wanted)
        if json_:
            console.print_json(json.dumps(summary["test"]))
        else:
            _print_bridge_test(summary)
        return

    if robustness:
        from vlfuse.evaluate.robustness import evaluate_robustness

        rows = evaluate_robustness(load_run(run), split)
        if json_:
            console.print_json(json.dumps(rows))
            return
        table = Table(title=f"robustness ({split})")
        for column in ("condition", rows[0]["metric"], "drop (points)"):
            table.add_column(column, justify="left" if column == "condition" else "right")
        for r in rows:
            table.add_row(r["condition"], f"{r['value']:.4f}", f"{r['drop_points']:+.2f}")
        console.print(table)
        console.print(f"written: {run / 'robustness.md'}, {run / 'robustness.json'}, {run / 'plots/robustness.png'}")
        return
    metrics = load_run(run).evaluate(split)
    if json_:
        console.print_json(json.dumps(metrics))
    else:
        _print_metrics({split: metrics})


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="run directory")],
    image: Annotated[Path | None, typer.Option(help="image file")] = None,
    text: Annotated[str | None, typer.Option(help="text / question")] = None,
    top_k: Annotated[int, typer.Option(help="how many labels to show")] = 3,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Top-k labels with probabilities for one image + text."""
    from vlfuse.api import load_run

    preds = load_run(run).predict(image=image, text=text, top_k=top_k)
    if json_:
        print(json.dumps([{"label": p.label, "probability": p.probability} for p in preds]))
        return
    table = Table(title=f"{image} | {text}")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for p in preds:
        table.add_row(p.label, f"{p.probability:.4f}")
    console.print(table)


@app.command("list")
def list_components() -> None:
    """Registered encoders, fusions, heads and built-in datasets."""
    from vlfuse.data.builtin import BUILTIN_DATASETS
    from vlfuse.registry import FUSIONS, HEADS, IMAGE_ENCODERS, TEXT_ENCODERS

    table = Table(title="vlfuse components")
    table.add_column("kind")
    table.add_column("names")
    for reg in (IMAGE_ENCODERS, TEXT_ENCODERS, FUSIONS, HEADS):
        table.add_row(reg.kind + "s", ", ".join(reg.names()))
    table.add_row("built-in datasets", ", ".join(sorted(BUILTIN_DATASETS)))
    console.print(table)


@data_app.command("show")
def data_show(
    name: Annotated[str, typer.Argument(help="built-in dataset name, or a config YAML")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a data key: --set data.limit=100")] = None,
    out: Annotated[Path, typer.Option(help="PNG grid of samples")] = Path("samples.png"),
) -> None:
    """Counts, label balance and a PNG grid of samples."""
    from vlfuse.config import DataConfig, apply_overrides, load_config
    from vlfuse.data.dataset import prepare_data
    from vlfuse.data.show import save_sample_grid, summarize

    if name.endswith((".yaml", ".yml")):
        cfg = load_config(name, set_ or None)
        data_cfg, seed = cfg.data, cfg.seed
    else:
        raw = apply_overrides({"data": {"name": name}}, set_ or [])
        data_cfg, seed = DataConfig.model_validate(raw["data"]), 0
    data = prepare_data(data_cfg, seed=seed)
    summary = summarize(data)
    console.print_json(json.dumps(summary, default=str))
    save_sample_grid(data.train, data.label_names, out)
    console.print(f"sample grid: {out}")


@app.command()
def compare(
    config: Annotated[Path, typer.Argument(help="experiment YAML: data, encoders, head and training budget")],
    fusions: Annotated[str, typer.Option(help="comma-separated fusion names, or 'all'")] = "all",
    seeds: Annotated[int, typer.Option(help="seeds per method")] = 3,
    jobs: Annotated[int | None, typer.Option(help="parallel training processes (default: min(cores, 2))")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a key for every run")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default runs/compare-<config>)")] = None,
) -> None:
    """Train every fusion and both unimodal baselines with N seeds; table, JSON and bar chart with 95 % CIs."""
    from vlfuse.config import load_config
    from vlfuse.evaluate.compare import markdown_table, run_comparison

    cfg = load_config(config, set_ or None)
    out = out or Path("runs") / f"compare-{config.stem}"
    results = run_comparison(cfg, fusions=fusions, seeds=seeds, out_dir=out, jobs=jobs)
    console.print(markdown_table(results))
    console.print(f"written: {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}")


def _generation(strategy: str, max_new_tokens: int | None, temperature: float, seed: int | None, beams: int):
    from vlfuse.lm.generate import GenerationConfig

    values = {"strategy": strategy, "temperature": temperature, "seed": seed, "num_beams": beams}
    if max_new_tokens is not None:
        values["max_new_tokens"] = max_new_tokens
    return GenerationConfig(**values)


GenStrategy = Annotated[str, typer.Option(help="greedy, sample or beam")]
GenTokens = Annotated[int | None, typer.Option(help="most tokens to generate (default: the run's setting)")]
GenTemperature = Annotated[float, typer.Option(help="sample: temperature")]
GenSeed = Annotated[int | None, typer.Option(help="sample: seed for repeatable sampling")]
GenBeams = Annotated[int, typer.Option(help="beam: number of beams")]


@app.command()
def ask(
    run: Annotated[str, typer.Argument(help="bridge run directory, or a shipped bridge: easy-vqa-bridge")],
    image: Annotated[Path, typer.Argument(help="image file")],
    question: Annotated[str, typer.Argument(help="the question, in words")],
    strategy: GenStrategy = "greedy",
    max_new_tokens: GenTokens = None,
    temperature: GenTemperature = 1.0,
    seed: GenSeed = None,
    beams: GenBeams = 3,
    stream: Annotated[bool, typer.Option(help="print the answer token by token as it is generated")] = True,
) -> None:
    """Answer a question about an image in words, with the run's language model."""
    from vlfuse.lm.run import BridgeRun

    bridge = BridgeRun.load(run)
    gen = _generation(strategy, max_new_tokens or bridge.cfg.generation.max_new_tokens, temperature, seed, beams)
    images = bridge.load_images([image])
    on_text = (lambda _row, piece: print(piece, end="", flush=True)) if stream else None
    answer = bridge.ask(images, [question], gen, on_text=on_text)[0]
    print("" if stream else answer)


@app.command()
def caption(
    run: Annotated[str, typer.Argument(help="bridge run directory, or a shipped bridge: easy-vqa-bridge")],
    images: Annotated[list[Path], typer.Argument(help="image files")],
    strategy: GenStrategy = "greedy",
    max_new_tokens: GenTokens = None,
    temperature: GenTemperature = 1.0,
    seed: GenSeed = None,
    beams: GenBeams = 3,
    json_: Annotated[bool, typer.Option("--json", help="print JSON lines {image, caption}")] = False,
) -> None:
    """Describe images in words, with the run's language model (one line per image)."""
    from vlfuse.lm.run import BridgeRun

    bridge = BridgeRun.load(run)
    gen = _generation(strategy, max_new_tokens or bridge.cfg.generation.max_new_tokens, temperature, seed, beams)
    captions = bridge.caption(bridge.load_images(images), gen)
    for path, text in zip(images, captions, strict=True):
        print(json.dumps({"image": str(path), "caption": text}) if json_ else f"{path}: {text}")


@app.command()
def serve(
    run: Annotated[
        str | None,
        typer.Argument(
            help="classification run directory (or ONNX export folder with --backend onnx); a bridge run or shipped "
            "bridge name (easy-vqa-bridge) is served as --bridge, a retrieval run as --retrieval-run",
        ),
    ] = None,
    bridge: Annotated[
        str | None, typer.Option(help="language bridge run directory or shipped name: POST /v1/ask, /v1/caption")
    ] = None,
    index: Annotated[
        Path | None, typer.Option(help="index file from `vlfuse index`: POST /v1/search, GET /v1/search/image/N")
    ] = None,
    retrieval_run: Annotated[
        Path | None, typer.Option(help="the retrieval run that built --index (default: the run the index records)")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    backend: Annotated[str, typer.Option(help="torch, onnx or onnx-int8 (onnx: after `vlfuse export`)")] = "torch",
    max_upload_bytes: Annotated[int, typer.Option(help="largest image file in bytes")] = 5 * 1024 * 1024,
    max_pixels: Annotated[int, typer.Option(help="largest image in width x height pixels")] = 4096 * 4096,
    formats: Annotated[str, typer.Option(help="accepted image formats, comma-separated")] = "PNG,JPEG,WEBP,GIF,BMP",
    max_text_chars: Annotated[int, typer.Option(help="longest text, question or query in characters")] = 1000,
    max_batch: Annotated[int, typer.Option(help="most requests gathered into one model call")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="longest a request waits for others to join its batch")] = 5.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level (info logs every request)")] = "info",
) -> None:
    """Serve over HTTP: REST API (POST /v1/predict, /v1/ask, /v1/caption, /v1/search; GET /v1/info, /healthz) and a
    web page at /. Each endpoint is there when its model is given."""
    from vlfuse.serve.limits import ServeLimits
    from vlfuse.serve.server import serve as serve_run

    limits = ServeLimits(
        max_upload_bytes=max_upload_bytes, max_pixels=max_pixels, formats=tuple(formats.split(",")),
        max_text_chars=max_text_chars, max_batch=max_batch, max_wait_ms=max_wait_ms,
    )  # fmt: skip
    serve_run(run, bridge=bridge, index=index, retrieval_run=retrieval_run, host=host, port=port, backend=backend,
              limits=limits, log_level=log_level)  # fmt: skip


@app.command("export")
def export_run(
    run: Annotated[Path, typer.Argument(help="run directory")],
    format_: Annotated[str, typer.Option("--format", help="export format (onnx)")] = "onnx",
    quantize: Annotated[str | None, typer.Option(help="also write an int8-quantised model: int8")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default RUN/onnx)")] = None,
) -> None:
    """Export a run for deployment: model.onnx + preprocess.json + tokenizer.json (serve with --backend onnx)."""
    from vlfuse.api import load_run
    from vlfuse.export.onnx import export_onnx

    if format_ != "onnx":
        raise typer.BadParameter(f"unknown format '{format_}'; expected onnx", param_hint="--format")
    target = export_onnx(load_run(run), out, quantize=quantize)
    console.print(f"exported: {target} ({', '.join(sorted(p.name for p in target.iterdir()))})")


@app.command()
def index(
    run: Annotated[Path, typer.Argument(help="retrieval run directory")],
    source: Annotated[str, typer.Argument(help="image folder, table, .txt file, or built-in (fashion-mnist[:test])")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="index file (default <source name>.index)")] = None,
    texts: Annotated[bool, typer.Option(help="index the source's texts (captions) instead of its images")] = False,
    append: Annotated[bool, typer.Option(help="add to the existing index at --out without rebuilding it")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing index at --out")] = False,
    backend: Annotated[str, typer.Option(help="auto, exact or hnsw (FAISS)")] = "auto",
    image_column: Annotated[str, typer.Option(help="tables: the image path column")] = "image",
    caption_column: Annotated[str, typer.Option(help="tables: the caption column (with --texts)")] = "caption",
) -> None:
    """Embed images (or texts) of a source into an index file for `vlfuse search`."""
    from vlfuse.retrieval.run import RetrievalRun
    from vlfuse.retrieval.search import build_index

    target = out or Path(f"{Path(source.replace(':', '-')).name or 'index'}{'-texts' if texts else ''}.index")
    report = build_index(RetrievalRun.load(run), source, target, texts=texts, append=append, overwrite=overwrite,
                         backend=backend, image_column=image_column, caption_column=caption_column)  # fmt: skip
    console.print(
        f"{report.path}: {report.added:,} {report.kind}(s) added, {report.total:,} in all, {report.backend} search; "
        f"{report.seconds:.1f} s (embedding {report.embed_seconds:.1f} s, index {report.index_seconds:.1f} s)"
    )


@app.command()
def search(
    run: Annotated[Path, typer.Argument(help="retrieval run directory")],
    index_file: Annotated[Path, typer.Argument(metavar="INDEX", help="index file from `vlfuse index`")],
    query: Annotated[str, typer.Argument(help="a text, or the path of an image file")],
    k: Annotated[int, typer.Option("-k", "--top-k", help="how many results")] = 5,
    sheet: Annotated[Path, typer.Option(help="contact sheet PNG")] = Path("search.png"),
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Top-k items of an index for a text (text → image) or an image (image → text / image)."""
    from vlfuse.retrieval.run import RetrievalRun
    from vlfuse.retrieval.search import search as run_search

    result = run_search(RetrievalRun.load(run), index_file, query, k=k, sheet=sheet)
    if json_:
        print(json.dumps([{"rank": h.rank, "score": h.score, "source": h.source, "label": h.label}
                          for h in result.hits]))  # fmt: skip
        return
    table = Table(title=f"{result.query_kind} → {result.index_kind}: {query}")
    for name in ("rank", "score", "source", "label"):
        table.add_column(name, justify="right" if name in ("rank", "score") else "left")
    for h in result.hits:
        table.add_row(str(h.rank), f"{h.score:.4f}", h.source, h.label or "")
    console.print(table)
    console.print(f"contact sheet: {result.sheet}  ({result.seconds * 1000:.1f} ms)")


@app.command()
def zeroshot(
    run: Annotated[Path, typer.Argument(help="retrieval run directory")],
    labels: Annotated[str | None, typer.Option(help="comma-separated label names (default: the run's)")] = None,
    template: Annotated[list[str] | None, typer.Option(help="prompt template, repeatable: 'a photo of {a}'")] = None,
    on: Annotated[str | None, typer.Option(help="labelled built-in split to score, e.g. fashion-mnist:test")] = None,
    image: Annotated[list[Path] | None, typer.Option(help="image file to label (repeatable)")] = None,
    heldout: Annotated[bool, typer.Option(help="score only the images of the run's held-out keys")] = False,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Label images from label names and prompt templates alone; with --on, the accuracy."""
    from vlfuse.retrieval.run import RetrievalRun
    from vlfuse.retrieval.search import zeroshot as run_zeroshot

    names = [n.strip() for n in labels.split(",") if n.strip()] if labels else None
    if on is None and not image:
        raise typer.BadParameter("give --on SOURCE (to score) or --image PATH (to label)")
    result = run_zeroshot(RetrievalRun.load(run), labels=names, templates=template, on=on,
                          images=[str(p) for p in image or []], heldout_only=heldout)  # fmt: skip
    if json_:
        print(json.dumps({"labels": result.labels, "templates": result.templates, "metrics": result.metrics,
                          "per_label": result.per_label, "predictions": result.predictions}))  # fmt: skip
        return
    for source, label, score in result.predictions:
        console.print(f"{source}: [bold]{label}[/bold] ({score:.4f})")
    if result.metrics:
        m = result.metrics
        console.print(f"zero-shot accuracy on {on}: [bold]{m['accuracy']:.4f}[/bold] ({m['samples']} images, "
                      f"{len(result.labels)} labels, {len(result.templates)} templates; balanced "
                      f"{m['balanced_accuracy']:.4f})")  # fmt: skip
        table = Table(title="accuracy per label")
        table.add_column("label")
        table.add_column("accuracy", justify="right")
        for label, acc in result.per_label.items():
            table.add_row(label, f"{acc:.4f}")
        console.print(table)


def main() -> None:
    try:
        app(standalone_mode=False)
    except VLFuseError as err:
        err_console.print(f"[red]error:[/red] {err}")
        sys.exit(2)
    except (ValueError, FileNotFoundError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
