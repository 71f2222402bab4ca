"""Retrieval commands over a retrieval run: index, search, zeroshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vlfuse.cli.app import app, console
from vlfuse.cli.ood import Strict, check_far


@app.command()
def index(
    run: Annotated[str, typer.Argument(help="retrieval run directory")],
    source: Annotated[str, typer.Argument(help="image folder, table, .txt file, or built-in (fashion-mnist[:test])")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="index file (default <source name>.index)")] = None,
    texts: Annotated[bool, typer.Option(help="index the source's texts (captions) instead of its images")] = False,
    append: Annotated[bool, typer.Option(help="add to the existing index at --out without rebuilding it")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing index at --out")] = False,
    backend: Annotated[str, typer.Option(help="auto, exact or hnsw (FAISS)")] = "auto",
    image_column: Annotated[str, typer.Option(help="tables: the image path column")] = "image",
    caption_column: Annotated[str, typer.Option(help="tables: the caption column (with --texts)")] = "caption",
    allow_outside_root: Annotated[
        bool, typer.Option(help="tables: accept image paths that leave the table's folder")
    ] = False,
    nproc: Annotated[int, typer.Option(min=1, help="processes sharing the embedding (torchrun)")] = 1,
    chunk: Annotated[int, typer.Option(min=1, help="images decoded and embedded at a time (and dealt to processes)")]
    = 4096,
) -> None:
    """Embed images (or texts) of a source into an index file for `vlfuse search`."""
    import os
    import sys

    from vlfuse.parallel import job_share
    from vlfuse.retrieval.search import build_index
    from vlfuse.task import load_run_for
    from vlfuse.threads import configure_threads
    from vlfuse.train.distributed import launch, relaunch_argv

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(launch(nproc, relaunch_argv(sys.argv[1:])))  # the same command, in nproc processes
    configure_threads()  # from the cores other processes leave free
    target = out or Path(f"{Path(source.replace(':', '-')).name or 'index'}{'-texts' if texts else ''}.index")
    share = job_share()
    try:
        report = build_index(load_run_for(run, "index"), source, target, texts=texts, append=append,
                             overwrite=overwrite, backend=backend, image_column=image_column,
                             caption_column=caption_column, allow_outside_root=allow_outside_root,
                             share=share, chunk_size=chunk)  # fmt: skip
    finally:
        share.close()
    if report is None:  # another process's share: the first one writes and reports
        return
    console.print(
        f"{report.path}: {report.added:,} {report.kind}(s) added, {report.total:,} in all, {report.backend} search; "
        f"{report.seconds:.1f} s (embedding {report.embed_seconds:.1f} s, index {report.index_seconds:.1f} s)"
    )


@app.command()
def search(
    run: Annotated[str, typer.Argument(help="retrieval run directory")],
    index_file: Annotated[Path, typer.Argument(metavar="INDEX", help="index file from `vlfuse index`")],
    query: Annotated[str, typer.Argument(help="a text, or the path of an image file")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="how many results")] = 5,
    sheet: Annotated[Path, typer.Option(help="contact sheet PNG")] = Path("search.png"),
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Top-k items of an index for a text (text → image) or an image (image → text / image)."""
    from vlfuse.retrieval.search import search as run_search
    from vlfuse.task import load_run_for

    result = run_search(load_run_for(run, "search"), index_file, query, k=k, sheet=sheet)
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
    run: Annotated[str, typer.Argument(help="retrieval run directory, or the shipped photo run: photo")],
    files: Annotated[list[Path] | None, typer.Argument(metavar="[IMAGES]...", help="image files to label")] = None,
    labels: Annotated[str | None, typer.Option(help="comma-separated label names (default: the run's)")] = None,
    template: Annotated[list[str] | None, typer.Option(help="prompt template, repeatable: 'a photo of {a}'")] = None,
    on: Annotated[str | None, typer.Option(help="labelled built-in split to score, e.g. fashion-mnist:test")] = None,
    image: Annotated[list[Path] | None, typer.Option(help="image file to label (repeatable)")] = None,
    heldout: Annotated[bool, typer.Option(help="score only the images of the run's held-out keys")] = False,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    strict: Strict = False,
) -> None:
    """Label images from label names and prompt templates alone; with --on, the accuracy."""
    from vlfuse.retrieval.search import zeroshot as run_zeroshot
    from vlfuse.task import load_run_for

    names = [n.strip() for n in labels.split(",") if n.strip()] if labels else None
    image = [*(files or []), *(image or [])]
    if on is None and not image:
        raise typer.BadParameter("give image files (to label) or --on SOURCE (to score)")
    loaded = load_run_for(run, "zeroshot")
    oods: list = [None] * len(image)
    if image and getattr(loaded, "ood", None) is not None:  # the check decodes them; without a detector, no need
        oods = check_far(loaded, run, [str(p) for p in image], loaded.load_images(image), strict=strict)
    result = run_zeroshot(loaded, labels=names, templates=template, on=on, images=[str(p) for p in image],
                          heldout_only=heldout)  # fmt: skip
    if json_:
        print(json.dumps({"labels": result.labels, "templates": result.templates, "metrics": result.metrics,
                          "per_label": result.per_label, "predictions": result.predictions, "ood": oods}))  # fmt: skip
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
