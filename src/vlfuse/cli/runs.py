"""Commands over runs of any task: train, evaluate, predict, export, serve, compare, list, data show.

Each dispatches through the task registry (`vlfuse.task`): a run directory (or shipped run name) names its task once,
and an operation its task does not support is a one-line error naming what it does support.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vlfuse.cli.app import app, console, data_app, print_metrics, setup_logging


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="config YAML of any task (omit with --resume)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a key: --set train.epochs=3")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="where to write the run (default runs/<config>-<time>)")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue this run directory from its last checkpoint")] = None,
    nproc: Annotated[int, typer.Option(min=1, help="processes per machine (DistributedDataParallel via torchrun)")] = 1,
    nnodes: Annotated[int, typer.Option(min=1, help="machines taking part (run the same command on each)")] = 1,
    node_rank: Annotated[int, typer.Option(min=0, help="this machine's number, 0 … nnodes-1")] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option(help="HOST:PORT where the machines meet (c10d)")] = None,
    max_restarts: Annotated[int, typer.Option(min=0, help="restarts of the group after a process dies; a restart "
                                              "continues from the last checkpoint")] = 0,
    stop_after_epochs: Annotated[int | None, typer.Option(hidden=True)] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run in --run-dir")] = False,
    verbose: bool = False,
) -> None:
    """Train a model of any task (the config's `task` key); writes a run directory with metrics, report and weights."""
    from vlfuse.api import default_run_dir
    from vlfuse.errors import CheckpointError
    from vlfuse.task import load_config
    from vlfuse.train.distributed import Launch, launch, restarted_by_torchrun
    from vlfuse.train.progress import ProgressBar
    from vlfuse.train.runner import run_training

    setup_logging(verbose)
    if resume is not None:
        target = resume
        if not (resume / "config.yaml").is_file():
            raise CheckpointError(
                f"'{resume}' holds no run to continue (no config.yaml: it was stopped before it started); start it "
                f"again with `vlfuse train CONFIG --run-dir {resume}`"
            )
        cfg = load_config(resume / "config.yaml", set_ or None)
    elif config is None:
        raise typer.BadParameter("give a CONFIG file or --resume RUN")
    else:
        cfg = load_config(config, set_ or None)
        target = run_dir or default_run_dir(config)
    spec = Launch(nproc, nnodes, node_rank, rdzv_endpoint, f"vlfuse-{Path(target).name}", max_restarts)
    if spec.needed and "WORLD_SIZE" not in os.environ:
        argv = ["train", *([str(config)] if config else []), "--run-dir", str(target)]
        argv += [f"--set={s}" for s in set_ or []]
        argv += ["--resume", str(resume)] if resume else []
        argv += ["--stop-after-epochs", str(stop_after_epochs)] if stop_after_epochs else []
        argv += ["--overwrite"] if overwrite else []
        raise typer.Exit(launch(spec, argv))
    if restarted_by_torchrun() and (Path(target) / "config.yaml").is_file():
        console.print(f"restarted after a failed process: continuing {target} from its last checkpoint")
        resume, overwrite = Path(target), False
    summary = run_training(cfg, target, resume=resume is not None, stop_after_epochs=stop_after_epochs,
                           callbacks=[ProgressBar()], overwrite=overwrite)  # fmt: skip
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if summary.get("skipped_rows"):
        console.print(f"[yellow]{summary['skipped_rows']} bad row(s) skipped (data.on_error=skip); first:[/yellow]")
        for line in summary["first_skipped"]:
            console.print(f"  {line}")
    if not summary["complete"]:
        console.print(f"stopped after epoch {summary['epochs']}; continue with: vlfuse train --resume {target}")
        return
    print_metrics(summary["metrics"])
    precision = summary["precision"]
    console.print(f"trained in {precision['used']} ({precision['why']})")
    console.print(f"run directory: [bold]{target}[/bold]  (report: {target / 'report.md'})")


@app.command()
def evaluate(
    run: Annotated[str, typer.Argument(help="run directory (any task) or shipped run name")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness",
            help="classify runs: score with each modality missing and under image/text corruptions instead; writes "
            "robustness.json, robustness.md and plots/robustness.png into the run directory",
        ),
    ] = False,
    objectives: Annotated[
        str | None,
        typer.Option(help="bridge runs: comma-separated test objectives to score (vqa, caption; default both)"),
    ] = None,
    modality_share: Annotated[
        bool, typer.Option("--modality-share", help="classify runs: image-vs-text Shapley shares over the split")
    ] = False,
    emap: Annotated[
        bool, typer.Option("--emap", help="classify runs: accuracy of the model vs its best additive projection")
    ] = False,
    mm_shap: Annotated[
        bool, typer.Option("--mm-shap", help="classify runs: MM-SHAP shares over patches and tokens (~1 s per row)")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="--modality-share / --emap: at most this many rows; --mm-shap: 100")
    ] = None,
    nproc: Annotated[int, typer.Option(min=1, help="processes sharing the split (torchrun); metrics as one")] = 1,
) -> None:
    """Score a trained run on a split of its data (--robustness: with missing and corrupted inputs; --modality-share,
    --emap: how much each modality, and their interaction, drive the predictions).

    A bridge run is scored on its test split (generated answers and captions); its metrics.json and report are
    updated (--objectives vqa,caption picks which).
    """
    from vlfuse.task import load_run, resolve_run
    from vlfuse.threads import configure_threads

    ref = resolve_run(run)
    configure_threads()  # from the cores other processes leave free
    if robustness:
        ref.task.require("robustness", run)
        _print_robustness(load_run(ref), split, json_)
        return
    if modality_share or emap or mm_shap:
        from vlfuse.cli import explain as reports

        ref.task.require("explain", run)
        if ref.task.name not in ("classify", "moderate"):
            raise typer.BadParameter(f"'{run}' is a '{ref.task.name}' run; --modality-share, --emap and --mm-shap "
                                     "score classify and moderate runs", param_hint="--modality-share")  # fmt: skip
        loaded = load_run(ref)
        found = {}
        if modality_share:
            found["modality_share"] = reports.modality_share_report(loaded, split, limit)
        if emap:
            found["emap"] = reports.emap_report(loaded, split, limit)
        if mm_shap:
            found["mm_shap"] = reports.mm_shap_report(loaded, split, limit)
        if json_:
            console.print_json(json.dumps(found))
            return
        if modality_share:
            reports.print_modality_share(found["modality_share"])
        if emap:
            reports.print_emap(found["emap"])
        if mm_shap:
            reports.print_modality_share(found["mm_shap"], "MM-SHAP (patches vs tokens)")
        return
    ref.task.require("evaluate", run)
    if nproc > 1 or "WORLD_SIZE" in os.environ:
        from vlfuse.cli.scale import evaluate_in_processes

        evaluate_in_processes(ref, run, split, nproc, json_, bool(robustness or objectives))
        return
    loaded = load_run(ref)
    options = {}
    if objectives is not None:
        if "objectives" not in inspect.signature(loaded.evaluate).parameters:
            raise typer.BadParameter(f"'{run}' is a '{ref.task.name}' run; --objectives is for runs that score "
                                     "several objectives (bridge)", param_hint="--objectives")  # fmt: skip
        options["objectives"] = tuple(o.strip() for o in objectives.split(",") if o.strip())
    metrics = loaded.evaluate(split, **options)
    if json_:
        console.print_json(json.dumps(metrics))
    else:
        print_metrics({split: metrics})


def _print_robustness(run, split: str, json_: bool) -> None:
    from vlfuse.classify.robustness import evaluate_robustness

    rows = evaluate_robustness(run, split)
    if json_:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"robustness ({split})")
    for column in ("condition", rows[0]["metric"], "drop (points)"):
        table.add_column(column, justify="left" if column == "condition" else "right")
    for r in rows:
        table.add_row(r["condition"], f"{r['value']:.4f}", f"{r['drop_points']:+.2f}")
    console.print(table)
    console.print(f"written: {run.path / 'robustness.md'}, {run.path / 'robustness.json'}, "
                  f"{run.path / 'plots/robustness.png'}")  # fmt: skip


@app.command()
def predict(
    run: Annotated[str, typer.Argument(help="classify, moderate or video run directory")],
    image: Annotated[Path | None, typer.Option(help="image file")] = None,
    text: Annotated[str | None, typer.Option(help="text / question")] = None,
    video: Annotated[Path | None, typer.Option(help="video file or folder of frame images (video runs)")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="how many labels to show")] = 3,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    backend: Annotated[
        str, typer.Option(help="auto (the run's ONNX export when made from its present weights, else torch), torch")
    ] = "auto",
) -> None:
    """Top-k labels with probabilities for one image (or clip, for a video run) + text.

    With a current ONNX export in RUN/onnx (`vlfuse export RUN`, or the first `vlfuse serve RUN`) the prediction runs
    on onnxruntime without importing torch, which starts several times faster."""
    if backend not in ("auto", "torch"):
        raise typer.BadParameter(f"unknown backend '{backend}'; expected auto or torch", param_hint="--backend")
    if image is not None and video is not None:
        raise typer.BadParameter("give --image or --video, not both", param_hint="--video")
    preds = _predict_onnx(Path(run), image, text, top_k) if backend == "auto" and video is None else None
    if preds is None:
        from vlfuse.task import load_run_for

        loaded = load_run_for(run, "predict")
        if video is not None and loaded.task != "video":
            raise typer.BadParameter(f"'{run}' is a '{loaded.task}' run; --video needs a video run",
                                     param_hint="--video")  # fmt: skip
        found = loaded.predict(video if video is not None else image, text, top_k=top_k)
        preds = [(p.label, p.probability) for p in found]
    if json_:
        print(json.dumps([{"label": label, "probability": probability} for label, probability in preds]))
        return
    table = Table(title=f"{video or image} | {text}")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for label, probability in preds:
        table.add_row(label, f"{probability:.4f}")
    console.print(table)


def _predict_onnx(run: Path, image: Path | None, text: str | None, top_k: int) -> list[tuple[str, float]] | None:
    """Top-k from the run's ONNX export when one exists that was made from the run's present weights, else None."""
    from vlfuse.export.format import current_export

    export_dir = current_export(run)
    if export_dir is None:
        return None
    from vlfuse.export.runtime import OnnxModel

    return OnnxModel(export_dir, threads=1).predict(image, text, top_k=top_k)  # one row: one thread starts fastest


@app.command("list")
def list_components() -> None:
    """Registered tasks, encoders, fusions, heads and built-in datasets."""
    from vlfuse.data.builtin import BUILTIN_NAMES
    from vlfuse.registry import FUSIONS, HEADS, IMAGE_ENCODERS, TEMPORAL_MODULES, TEXT_ENCODERS
    from vlfuse.task import TASKS

    tasks = Table(title="vlfuse tasks (the `task` key of a config)")
    for column in ("task", "what it does", "a run supports"):
        tasks.add_column(column)
    for info in TASKS.values():
        tasks.add_row(info.name, info.summary, ", ".join(info.operations))
    console.print(tasks)
    table = Table(title="vlfuse components")
    table.add_column("kind")
    table.add_column("names")
    for reg in (IMAGE_ENCODERS, TEXT_ENCODERS, FUSIONS, HEADS, TEMPORAL_MODULES):
        table.add_row(reg.kind + "s", ", ".join(reg.names()))
    table.add_row("built-in datasets", ", ".join(sorted(BUILTIN_NAMES)))
    console.print(table)


@data_app.command("show")
def data_show(
    name: Annotated[str, typer.Argument(help="built-in dataset name, or a config YAML")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a data key: --set data.limit=100")] = None,
    out: Annotated[Path, typer.Option(help="PNG grid of samples")] = Path("samples.png"),
) -> None:
    """Counts, label balance and a PNG grid of samples (for clips, each sample's frame strip)."""
    from vlfuse.config import DataConfig, VideoDataConfig, apply_overrides
    from vlfuse.data.builtin import VIDEO_BUILTINS
    from vlfuse.data.prepare import prepare_data
    from vlfuse.data.show import save_sample_grid, summarize
    from vlfuse.task import load_config

    if name.endswith((".yaml", ".yml")):
        cfg = load_config(name, set_ or None)
        data_cfg, seed = cfg.data, cfg.seed
    else:
        raw = apply_overrides({"data": {"name": name}}, set_ or [])
        section = VideoDataConfig if name in VIDEO_BUILTINS else DataConfig
        data_cfg, seed = section.model_validate(raw["data"]), 0
    data = prepare_data(data_cfg, seed=seed)
    summary = summarize(data)
    console.print_json(json.dumps(summary, default=str))
    save_sample_grid(data.train, data.label_names, out)
    console.print(f"sample grid: {out}")


@app.command()
def compare(
    config: Annotated[Path, typer.Argument(help="experiment YAML: data, encoders, head and training budget")],
    fusions: Annotated[str, typer.Option(help="comma-separated fusion names, or 'all'")] = "all",
    seeds: Annotated[int, typer.Option(min=1, help="seeds per method")] = 3,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="parallel training processes (default: min(cores, 2))")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a key for every run")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default runs/compare-<config>)")] = None,
    temporal: Annotated[
        str | None, typer.Option(help="video configs: compare temporal modules instead of fusions ('all' or names)")
    ] = None,
) -> None:
    """Train every fusion and both unimodal baselines (or, with --temporal, every temporal module and the order-blind
    baselines) with N seeds; table, JSON and bar chart with 95 % CIs."""
    from vlfuse.compare import markdown_table, run_comparison
    from vlfuse.task import load_config

    cfg = load_config(config, set_ or None)
    out = out or Path("runs") / f"compare-{config.stem}"
    results = run_comparison(cfg, fusions=fusions, seeds=seeds, out_dir=out, jobs=jobs, temporal=temporal)
    console.print(markdown_table(results))
    console.print(f"written: {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}")


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
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    backend: Annotated[
        str, typer.Option(help="auto (ONNX, exported at first start, verified; else torch), torch, onnx, onnx-int8")
    ] = "auto",
    max_upload_bytes: Annotated[int, typer.Option(min=1, help="largest image file in bytes")] = 5 * 1024 * 1024,
    max_pixels: Annotated[int, typer.Option(min=1, help="largest image in width x height pixels")] = 4096 * 4096,
    formats: Annotated[str, typer.Option(help="accepted image formats, comma-separated")] = "PNG,JPEG,WEBP,GIF,BMP",
    max_text_chars: Annotated[int, typer.Option(min=1, help="longest text, question or query in characters")] = 1000,
    max_batch: Annotated[int, typer.Option(min=1, help="most requests gathered into one model call")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="longest a request waits for others to join its batch")] = 5.0,
    max_queue: Annotated[
        int, typer.Option(min=1, help="most requests waiting for the model per endpoint; more get 503 + Retry-After")
    ] = 128,
    max_connections: Annotated[int, typer.Option(min=1, help="most open connections; more get 503")] = 1000,
    header_timeout: Annotated[float, typer.Option(min=0.001, help="seconds a client has to send its headers")] = 10.0,
    body_timeout: Annotated[float, typer.Option(min=0.001, help="seconds a client has to send its body")] = 30.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level (info logs every request)")] = "info",
) -> None:
    """Serve over HTTP: REST API (POST /v1/predict, /v1/ask, /v1/caption, /v1/search; GET /v1/info, /healthz) and a
    web page at /. Each endpoint is there when its model is given."""
    from vlfuse.serve.limits import ServeLimits
    from vlfuse.serve.server import serve as serve_run

    limits = ServeLimits(
        max_upload_bytes=max_upload_bytes, max_pixels=max_pixels, formats=tuple(formats.split(",")),
        max_text_chars=max_text_chars, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
        max_connections=max_connections, header_timeout_s=header_timeout, body_timeout_s=body_timeout,
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
    from vlfuse.export.onnx import export_onnx
    from vlfuse.task import load_run_for

    if format_ != "onnx":
        raise typer.BadParameter(f"unknown format '{format_}'; expected onnx", param_hint="--format")
    target = export_onnx(load_run_for(run, "export"), out, quantize=quantize)
    console.print(f"exported: {target} ({', '.join(sorted(p.name for p in target.iterdir()))})")
