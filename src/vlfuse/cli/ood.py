"""`vlfuse ood RUN`: fit a run's out-of-distribution detector; the shared warning / --strict handling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from vlfuse.cli.app import app, console, err_console

Strict = Annotated[bool, typer.Option(help="refuse (exit 3) instead of warning when an image is out of distribution")]


def check_far(run: Any, name: str, sources: Sequence[str], images, *, strict: bool) -> list[dict | None]:
    """Score every image; print a warning for each far one (or, with `strict`, exit 3 before any output).
    Returns per image its verdict as a dict (None when the run has no detector)."""
    from vlfuse.ood import far_warning

    verdicts = run.ood_verdicts(images) if hasattr(run, "ood_verdicts") else None
    if verdicts is None:
        return [None] * len(sources)
    far = [(s, v) for s, v in zip(sources, verdicts, strict=True) if v.far]
    for source, verdict in far:
        err_console.print(f"[yellow]warning[/yellow]: {far_warning(source, verdict, name)}")
    if strict and far:
        err_console.print(f"refused (--strict): {len(far)} image(s) out of distribution")
        raise typer.Exit(3)
    return [v.to_dict() for v in verdicts]


@app.command()
def ood(
    run: Annotated[str, typer.Argument(help="bridge or photo run directory")],
    quantile: Annotated[float, typer.Option(help="held-out in-distribution images flagged: 1 − quantile")] = 0.99,
    components: Annotated[int, typer.Option(help="principal directions of the feature density")] = 32,
    out: Annotated[Path | None, typer.Option(help="folder to write ood.safetensors to (default: the run)")] = None,
    detector: Annotated[str | None, typer.Option(help="density (bridges' default) or confidence (the ImageNet "
                                                      "classifier's; the photo run's)")] = None,
) -> None:
    """Fit the run's out-of-distribution detector on its training images: later answers, captions and labels on
    far-away images carry a warning (or are refused with --strict)."""
    from vlfuse.ood_fit import fit_run_ood
    from vlfuse.task import load_run

    density = fit_run_ood(load_run(run), quantile=quantile, components=components, out=out, detector=detector)
    info = density.info
    console.print(f"OOD detector ({info.get('kind', 'feature density')}) fitted on {info['train_features']:,} training "
                  f"features ({info['source']}); threshold "
                  f"{density.threshold:.2f} = the {quantile:.0%} quantile of {info['held_out_features']:,} held-out "
                  f"ones (median {info['held_out_median']:.2f})")  # fmt: skip
