"""`vlfuse explain`: which modality, pixels and words drove a prediction — with the measured checks — and the split
reports behind `vlfuse evaluate --modality-share / --emap`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vlfuse.cli.app import app, console


@app.command()
def explain(
    run: Annotated[str, typer.Argument(help="classify or moderate run directory, or a bridge run / shipped bridge")],
    image: Annotated[Path | None, typer.Option(help="image file")] = None,
    text: Annotated[str | None, typer.Option(help="text / question")] = None,
    question: Annotated[str | None, typer.Option(help="bridge runs: the question (same as --text)")] = None,
    method: Annotated[
        str, typer.Option(help="pixel methods: gradcam, ig, occlusion, attention (comma-separated)")
    ] = "gradcam,ig",
    label: Annotated[str | None, typer.Option(help="the label to explain (default: the predicted one)")] = None,
    steps: Annotated[int, typer.Option(min=2, help="Integrated Gradients steps")] = 32,
    mm_shap: Annotated[
        bool, typer.Option("--mm-shap", help="also Shapley values per patch and token (slower)")
    ] = False,
    sanity: Annotated[bool, typer.Option("--sanity", help="also the model-randomization check of each map")] = False,
    out: Annotated[Path, typer.Option(help="folder for explanation.json, PNG overlays and index.html")] = Path(
        "explanation"
    ),
    json_: Annotated[bool, typer.Option("--json", help="print the JSON instead of a summary")] = False,
) -> None:
    """Explain one prediction: the exact image-vs-text Shapley split, pixel maps (Grad-CAM, Integrated Gradients,
    occlusion, attention) each with its deletion check, and word attributions; bridge runs: which image cells each
    generated word looked at."""
    from vlfuse.task import load_run, resolve_run
    from vlfuse.threads import configure_threads

    ref = resolve_run(run)
    ref.task.require("explain", run)
    prompt = question if question is not None else text
    if ref.task.name == "bridge" and (image is None or prompt is None):  # said before the language model loads
        raise typer.BadParameter("a bridge explanation needs --image and --question", param_hint="--question")
    configure_threads()
    loaded = load_run(ref)
    if ref.task.name == "bridge":
        from vlfuse.bridge.explain import explain_answer, write_answer_explanation

        result = explain_answer(loaded, image, prompt)
        page = write_answer_explanation(result, out)
        data = result.result
    else:
        from vlfuse.explain.example import explain_example, write_explanation

        explanation = explain_example(loaded, image, prompt, methods=method, label=label, steps=steps,
                                      mm_shap=mm_shap, sanity=sanity)  # fmt: skip
        page = write_explanation(explanation, out)
        data = explanation.result
    if json_:
        print(json.dumps(data))
        return
    _print_summary(data)
    console.print(f"written: {page} (and explanation.json, PNG overlays in {out})")


def _print_summary(data: dict) -> None:
    console.print(f"[bold]{data.get('label') or data.get('answer')}[/bold]"
                  + (f" ({100 * data['probability']:.1f} %)" if "probability" in data else ""))  # fmt: skip
    mod = data.get("modality")
    if mod:
        console.print(
            f"modality (exact Shapley): image {100 * mod['image_share']:.1f} %, text "
            f"{100 * mod['text_share']:.1f} %  (φ_image {mod['image']:+.4f}, φ_text {mod['text']:+.4f})"
        )
    table = Table(title="pixel maps: deletion check (top 10 % vs random 10 % of pixels)")
    for column in ("method", "p drop, top", "p drop, random", "check", "randomization ρ"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, entry in data.get("pixels", {}).items():
        if "deletion" not in entry:
            table.add_row(name, "—", "—", entry.get("skipped", "n/a"), "—")
            continue
        d = entry["deletion"]
        rho = entry.get("randomization_spearman")
        table.add_row(name, f"{100 * d['top_drop']:.1f}", f"{100 * d['random_drop']:.1f}",
                      "passed" if d["passed"] else "FAILED", f"{rho:+.2f}" if rho is not None else "—")  # fmt: skip
    if data.get("pixels"):
        console.print(table)
    if "image_contribution" in data:
        d = data["deletion"]
        console.print(f"the image adds {data['image_contribution']:+.2f} to the answer's log-probability; deletion "
                      f"check (top 10 % of pixels by attention vs random): {d['top_logprob_drop']:.2f} vs "
                      f"{d['random_logprob_drop']:.2f} — {'passed' if d['passed'] else 'FAILED'}")  # fmt: skip
    words = data.get("words")
    if words:
        console.print("words (Integrated Gradients): " + "  ".join(
            f"{t} {v:+.2f}" for t, v in zip(words["tokens"], words["ig"], strict=True)))  # fmt: skip


def modality_share_report(run, split: str, limit: int | None) -> dict:
    """Shares of the exact image-vs-text Shapley split over a split; written to RUN/modality_share.json."""
    from vlfuse.explain.split import modality_shares, share_report

    shares = modality_shares(run.model, run.objective, run.split_data(split), run.preprocess, limit=limit)
    report = {"split": split, **share_report(shares, run.label_names)}
    (run.path / "modality_share.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def mm_shap_report(run, split: str, limit: int | None) -> dict:
    """MM-SHAP-style shares (patches vs tokens) over `limit` rows of a split (default 100: ~1 s per row); written
    to RUN/mm_shap.json."""
    from vlfuse.explain.split import mm_shap_shares, share_report
    from vlfuse.explain.target import unk_id

    shares = mm_shap_shares(run.model, run.objective, run.split_data(split), run.preprocess, unk_id=unk_id(run),
                            rows=limit or 100)  # fmt: skip
    report = {"split": split, **share_report(shares, run.label_names)}
    (run.path / "mm_shap.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def emap_report(run, split: str, limit: int | None) -> dict:
    """The EMAP gap over a split; written to RUN/emap.json."""
    from vlfuse.explain.emap import emap_split

    report = {"split": split, **emap_split(run.model, run.objective, run.split_data(split), run.preprocess,
                                           limit=limit)}  # fmt: skip
    (run.path / "emap.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def print_modality_share(report: dict, what: str = "the exact Shapley split") -> None:
    table = Table(title=f"image share of {what} ({report['split']}, {report['all']['rows']} rows)")
    for column in ("rows of", "rows", "mean", "q1", "median", "q3", "image-dominated"):
        table.add_column(column, justify="left" if column == "rows of" else "right")
    for name, s in [("all", report["all"]), *report["groups"].items()]:
        table.add_row(
            name,
            str(s["rows"]),
            *[
                f"{100 * s[k]:.1f} %"
                for k in (
                    "image_share_mean",
                    "image_share_q1",
                    "image_share_median",
                    "image_share_q3",
                    "image_dominated",
                )
            ],
        )
    console.print(table)


def print_emap(report: dict) -> None:
    console.print(f"EMAP ({report['split']}, {report['rows']} rows in chunks of {report['chunk']}): accuracy "
                  f"{100 * report['accuracy']:.2f} %, additive projection {100 * report['emap_accuracy']:.2f} % — "
                  f"gap {100 * report['emap_gap']:+.2f} points (interactions the fusion uses)")  # fmt: skip
