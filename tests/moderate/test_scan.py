"""The moderation run and its batch scan: fitted rules and measures in the run, decisions that follow them, every item
of a scan in the output exactly once — through bad items, torn lines and a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import vlfuse
from vlfuse.errors import DataError
from vlfuse.moderate.policy import band_of, label_decision
from vlfuse.moderate.scan import meta_path, scan

VLFUSE = [sys.executable, "-m", "vlfuse.cli"]


@pytest.fixture(scope="module")
def run_dir(trained_runs) -> Path:
    return trained_runs("moderate")[0]


@pytest.fixture(scope="module")
def run(run_dir):
    return vlfuse.load_run(run_dir)


@pytest.fixture(scope="module")
def photos(run):
    """The test split's unique photos, (M, 1, 28, 28) uint8 (the data is prepared once for the module)."""
    return run.split_data("test").images


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_run_holds_rules_chosen_on_val_and_measured_on_test(run_dir):
    moderation = json.loads((run_dir / "moderation.json").read_text())
    assert moderation["score_labels"] == ["mismatch", "prohibited", "abusive"]
    assert set(moderation["rules"]) == {"mismatch", "prohibited", "abusive"}
    for name, rule in moderation["rules"].items():
        assert rule["met_on_val"] and 0 <= rule["threshold"] <= 1
        test = moderation["measures"]["test"][name]
        assert {"auroc", "before", "after", "at_threshold", "three_way"} <= set(test)
        low, high = test["at_threshold"]["fpr"]["ci95"]
        assert low <= test["at_threshold"]["fpr"]["value"] <= high
    assert moderation["calibration"]["method"] == "temperature"
    assert all(t > 0 for t in moderation["calibration"]["temperature"])
    report = (run_dir / "report.md").read_text()
    assert "## Moderation" in report and "automatic-decision precision" in report
    assert (run_dir / "plots/reliability_test.png").stat().st_size > 1000


def test_decisions_follow_the_fitted_rules(run, photos):
    images = [photos[i] for i in range(16)]
    texts = ["authentic sneaker", "replica bag, no idiots"] * 8
    verdicts = run.moderate(images, texts, attribute=True)
    probs = run.calibrated(images, texts)  # (16, 3)
    for verdict, row in zip(verdicts, probs, strict=True):
        for k, name in enumerate(run.scores):
            rule = run.rules[name]
            assert verdict.labels[name].decision == label_decision(row[k], rule["action"], *band_of(rule))
            assert verdict.labels[name].driver in ("image", "text", "both")
        assert verdict.decision == max((v.decision for v in verdict.labels.values()),
                                       key=("allow", "review", "block").index)  # fmt: skip


def test_a_scan_holds_every_item_once_and_a_rerun_adds_nothing(run, tmp_path):
    out = tmp_path / "d.jsonl"
    first = scan(run, "marketplace:test", out, batch_size=64, limit=300)
    assert first["items"] == first["new"] == 300
    again = scan(run, "marketplace:test", out, batch_size=64, limit=300)
    assert again["new"] == 0 and again["resumed_from"] == 300
    records = lines(out)
    assert [r["item"] for r in records] == list(range(300))
    assert all(r["truth"] is not None and r["decision"] in ("allow", "review", "block") for r in records)


def test_a_torn_last_line_is_cut_and_that_item_scanned_again(run, tmp_path):
    out = tmp_path / "d.jsonl"
    whole = tmp_path / "whole.jsonl"
    scan(run, "marketplace:test", whole, batch_size=32, limit=100)
    kept = "".join(whole.read_text().splitlines(keepends=True)[:64])
    out.write_text(kept + '{"item": 64, "id": "marketplace:test/64", "deci')  # as if killed mid-write
    meta_path(out).write_text(meta_path(whole).read_text())
    result = scan(run, "marketplace:test", out, batch_size=32, limit=100)
    assert result["cut_torn_line"] and result["resumed_from"] == 64
    assert out.read_text() == whole.read_text()


def test_an_output_of_another_scan_is_refused(run, tmp_path):
    out = tmp_path / "d.jsonl"
    scan(run, "marketplace:test", out, limit=10)
    with pytest.raises(DataError, match="written by another scan \\(limit differ\\).*--overwrite"):
        scan(run, "marketplace:test", out, limit=20)
    assert scan(run, "marketplace:test", out, limit=20, overwrite=True)["items"] == 20


def test_bad_items_are_reported_in_the_output_never_dropped(run, photos, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(photos[0][0].numpy()).save(good)
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    (tmp_path / "posts.csv").write_text(
        "image,text\n"
        "good.png,authentic sneaker for sale\n"
        "broken.png,genuine bag\n"
        "missing.png,genuine bag\n"
        "good.png,\"  \x01 \"\n"
        ",\n"
        "good.png,\n"  # no text: scored from the image alone (placeholders)
    )
    out = tmp_path / "d.jsonl"
    result = scan(run, str(tmp_path / "posts.csv"), out)
    records = lines(out)
    assert result["items"] == len(records) == 6 and [r["item"] for r in records] == list(range(6))
    decisions = [r["decision"] for r in records]
    assert decisions[0] != "error" and decisions[5] != "error"
    assert decisions[1:5] == ["error"] * 4
    assert "broken.png" in records[1]["error"]
    assert "missing.png" in records[2]["error"]
    assert "posts.csv:4: text is empty" in records[3]["error"]
    assert "row 5: neither an image" in records[4]["error"]


def test_json_lines_on_stdin_with_a_bad_line(run_dir, tmp_path):
    out = tmp_path / "d.jsonl"
    stdin = '{"id": "a", "text": "authentic bag"}\nnot json\n{"id": "c", "text": "replica bag"}\n{"image": 5}\n'
    done = subprocess.run([*VLFUSE, "moderate", str(run_dir), "-", "--out", str(out), "--no-report"], input=stdin,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    records = lines(out)
    assert [r["id"] for r in records] == ["a", "stdin:2", "c", "stdin:4"]
    assert records[1]["decision"] == "error" and "not a JSON object" in records[1]["error"]
    assert "row 4, column 'image': expected an image path, got 5" in records[3]["error"]


def test_a_scan_killed_with_sigkill_resumes_with_every_item_exactly_once(run_dir, tmp_path):
    out, whole = tmp_path / "killed.jsonl", tmp_path / "whole.jsonl"
    args = ["moderate", str(run_dir), "marketplace:test", "--limit", "4000", "--batch-size", "8", "--no-report"]
    for kill_after in (200, 1600):  # two kills at different points, each followed by a re-run
        process = subprocess.Popen([*VLFUSE, *args, "--out", str(out)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 120
        while (not out.exists() or out.read_bytes().count(b"\n") < kill_after) and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert 0 < out.read_bytes().count(b"\n") < 4000  # really interrupted mid-scan
    done = subprocess.run([*VLFUSE, *args, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "continued an earlier scan" in done.stdout, done.stderr[-3000:]
    records = lines(out)
    assert [r["item"] for r in records] == list(range(4000))  # every item, once, in order
    scan(vlfuse.load_run(run_dir), "marketplace:test", whole, batch_size=8, limit=4000)
    assert out.read_text() == whole.read_text()  # and the same decisions as an uninterrupted scan


def test_the_scan_report_counts_every_decision(run_dir, cli, tmp_path):
    out = tmp_path / "d.jsonl"
    done = cli("moderate", str(run_dir), "marketplace:test", "--limit", "500", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "d.jsonl.report/summary.json").read_text())
    counts = {d: sum(r["decision"] == d for r in lines(out)) for d in ("allow", "review", "block")}
    assert summary["items"] == 500 and {d: summary["decisions"].get(d, 0) for d in counts} == counts
    assert summary["labelled"] == 500
    report = (tmp_path / "d.jsonl.report/report.md").read_text()
    assert "histograms.png" in report and (tmp_path / "d.jsonl.report/histograms.png").is_file()
    assert any((tmp_path / "d.jsonl.report").glob("grid_*.png"))
    assert all(len(v) <= 8 for v in summary["worst_false_positives"].values())


def test_an_image_folder_is_scanned_image_only(run, photos, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    images = photos
    for i, name in enumerate(["a.png", "b.png", "sub/c.png"]):
        Image.fromarray(images[i][0].numpy()).save(folder / name)
    (folder / "sub/d.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "d.jsonl"
    scan(run, str(folder), out)
    records = lines(out)
    assert [r["id"] for r in records] == ["a.png", "b.png", "sub/c.png", "sub/d.png"]
    assert [r["decision"] == "error" for r in records] == [False, False, False, True]
    assert records[0]["image"] == str(folder / "a.png") and "truth" not in records[0]
    expected = run.moderate([str(folder / "a.png")], None)[0]
    assert records[0]["labels"]["prohibited"]["probability"] == pytest.approx(expected.labels["prohibited"].probability)


def test_attribution_skips_items_with_one_modality(run, photos):
    images = [photos[0], None, photos[1]]
    verdicts = run.moderate(images, ["replica bag", "authentic bag", None], attribute=True)
    assert [v.labels["prohibited"].driver is None for v in verdicts] == [False, True, True]


def test_a_table_edited_after_a_kill_is_not_continued(run, tmp_path):
    table = tmp_path / "posts.jsonl"
    table.write_text('{"text": "authentic bag"}\n{"text": "replica bag"}\n')
    out = tmp_path / "d.jsonl"
    scan(run, str(table), out)
    with open(table, "a") as f:
        f.write('{"text": "dupe sneaker"}\n')
    with pytest.raises(DataError, match="written by another scan \\(source_bytes"):
        scan(run, str(table), out)


def test_a_scan_shared_by_two_processes_survives_a_kill_with_every_item_once(run_dir, tmp_path):
    """`--nproc 2`: the items are dealt to two processes, each writing a resumable part; the first appends the parts
    to the output in item order. Killed (the whole process group, SIGKILL) mid-scan and re-run, the output equals
    a single process's uninterrupted scan and no part file is left."""
    out, whole = tmp_path / "shared.jsonl", tmp_path / "whole.jsonl"
    args = [*VLFUSE, "moderate", str(run_dir), "marketplace:test", "--limit", "3000", "--batch-size", "8",
            "--no-report", "--out", str(out), "--nproc", "2"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    part = tmp_path / "shared.jsonl.part1-of-2"
    deadline = time.monotonic() + 120
    while (not part.exists() or part.read_bytes().count(b"\n") < 300) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < part.read_bytes().count(b"\n") < 1500  # really interrupted mid-scan
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["item"] for r in lines(out)] == list(range(3000))
    scan(vlfuse.load_run(run_dir), "marketplace:test", whole, batch_size=8, limit=3000)
    assert out.read_text() == whole.read_text()
    assert not list(tmp_path.glob("shared.jsonl.part*"))
