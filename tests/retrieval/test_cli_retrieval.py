"""`vlfuse train` (task: retrieval), `index`, `search`, `zeroshot` and `evaluate` end to end on a tiny easy-VQA run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file
from tiny_configs import TINY_RETRIEVAL
from typer.testing import CliRunner

from vlfuse.cli import app

runner = CliRunner()


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # rich wraps long lines at the terminal width


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrieval")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RETRIEVAL))
    out = cli("train", config, "--run-dir", tmp / "run")
    assert "t2i_r1" in out
    return tmp / "run"


def test_train_writes_a_retrieval_run(run):
    for name in ("config.yaml", "tokenizer.json", "model.safetensors", "metrics.jsonl", "report.md", "labels.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert set(metrics) >= {"val", "test", "zeroshot", "zeroshot_heldout_all_labels", "zeroshot_seen"}
    assert metrics["test"]["images"] == 200 and metrics["zeroshot"]["samples"] == 200
    assert metrics["val"]["t2i_r1"] > 3 / 23  # 23 keys in validation ("red circle" is held out): > 3x chance
    assert json.loads((run / "labels.json").read_text())["heldout"] == ["red circle"]
    evaluated = json.loads(cli("evaluate", run, "--split", "val", "--json"))
    assert evaluated["t2i_r1"] == pytest.approx(metrics["val"]["t2i_r1"])


def test_index_search_append_and_image_to_text(run, tmp_path):
    index = tmp_path / "shapes.index"
    assert "1,000 image(s) added" in cli("index", run, "easy-vqa:test", "-o", index)
    hits = json.loads(cli("search", run, index, "a blue triangle", "-k", "4", "--sheet", tmp_path / "s.png", "--json"))
    assert len(hits) == 4 and [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(h["source"].startswith("easy-vqa:test/") for h in hits)
    with Image.open(tmp_path / "s.png") as sheet:
        assert sheet.width > 4 * 100 and sheet.height > 100

    folder = tmp_path / "mine"
    folder.mkdir()
    for i, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (40, 40), colour).save(folder / f"{i}.png")
    out = cli("index", run, folder, "-o", index, "--append")
    assert "2 image(s) added, 1,002 in all" in out
    hits = json.loads(cli("search", run, index, folder / "1.png", "-k", "1", "--sheet", tmp_path / "q.png", "--json"))
    assert hits[0]["source"] == str(folder / "1.png") and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)

    texts = tmp_path / "captions.index"
    assert "24 text(s) added" in cli("index", run, "easy-vqa", "--texts", "-o", texts)
    hits = json.loads(cli("search", run, texts, folder / "0.png", "-k", "24", "--sheet", tmp_path / "t.png", "--json"))
    assert len(hits) == 24 and len({h["label"] for h in hits}) == 24 and hits[0]["label"].startswith("a ")


def test_zeroshot_scores_a_builtin_split(run, tmp_path):
    result = json.loads(cli("zeroshot", run, "--on", "easy-vqa:test", "--json"))
    assert result["metrics"]["samples"] == 888 and len(result["labels"]) == 24
    assert result["templates"][0] == "a photo of a {color} {shape}"  # held-out templates by default
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    mine = json.loads(cli("zeroshot", run, "--on", "easy-vqa:test", "--labels", "red circle,blue rectangle",
                          "--template", "a {color} {shape}", "--json"))  # fmt: skip
    assert mine["metrics"]["samples"] < 888  # only images labelled with one of the given labels are scored
    held = json.loads(cli("zeroshot", run, "--on", "easy-vqa:test", "--heldout", "--json"))
    assert held["labels"] == ["red circle"] and held["metrics"]["accuracy"] == 1.0  # one label: always right


def test_query_against_an_index_of_another_model_is_refused(run, tmp_path):
    index = tmp_path / "a.index"
    cli("index", run, "easy-vqa", "--texts", "-o", index)
    other = tmp_path / "other"
    shutil.copytree(run, other)
    weights = load_file(other / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01
    save_file(weights, other / "model.safetensors")
    proc = subprocess.run([sys.executable, "-m", "vlfuse.cli", "search", other, index, "a red circle"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())  # rich wraps at the console width
    assert "built by a different model" in message and f"'{other}'" in message.replace(" ", "")


def test_an_index_table_may_not_name_images_outside_its_folder(run, tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    Image.new("RGB", (40, 40), "red").save(tmp_path / "outside.png")
    Image.new("RGB", (40, 40), "blue").save(tables / "inside.png")
    (tables / "t.csv").write_text("image\ninside.png\n../outside.png\n")
    refused = runner.invoke(app, ["index", str(run), str(tables / "t.csv"), "-o", str(tmp_path / "t.index")])
    assert refused.exit_code != 0 and not (tmp_path / "t.index").exists()
    assert "row 2, column 'image': image path '../outside.png' leaves the table's folder" in str(refused.exception)
    out = cli("index", run, tables / "t.csv", "-o", tmp_path / "t.index", "--allow-outside-root")
    assert "2 image(s) added" in out


def test_index_shared_by_two_processes_equals_one_process(run, tmp_path):
    """`vlfuse index --nproc 2`: each process embeds every other chunk (decoding only its own); the first writes one
    index with the items in the source's order — the index a single process builds."""
    from vlfuse.retrieval.index import EmbeddingIndex

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(9):
        Image.new("RGB", (32, 32), (28 * i, 200 - 20 * i, 90)).save(folder / f"{i}.png")
    one, two = tmp_path / "one.index", tmp_path / "two.index"
    cli("index", run, folder, "--out", one)
    done = subprocess.run([sys.executable, "-m", "vlfuse.cli", "index", str(run), str(folder), "--out", str(two),
                           "--nproc", "2", "--chunk", "2"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = EmbeddingIndex.load(one), EmbeddingIndex.load(two)
    assert b.sources == a.sources and len(b) == 9
    assert (a.embeddings - b.embeddings).abs().max() < 1e-5
