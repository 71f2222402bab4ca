"""Packing data into WebDataset shards and streaming it back: counts, bytes, order, resume, ranks, corrupt shards."""

from __future__ import annotations

import copy
import json
import tarfile

import pytest
import torch
from tiny_configs import TINY_VQA

from vlfuse.config import DataConfig, StreamConfig
from vlfuse.data.pack import pack, parse_size
from vlfuse.data.prepare import prepare_data
from vlfuse.data.shards import SampleDecoder, ShardIndex, ShardLoader, split_batches
from vlfuse.errors import DataError

TINY_DATA = {k: v for k, v in TINY_VQA["data"].items() if k != "augment"}


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    out = tmp_path_factory.mktemp("packed")
    result = pack(DataConfig(**TINY_DATA), out, shard_size="20kB")
    return out, result


def _loader(out, *, workers=0, rank=0, world_size=1, resample=True, batch_size=32, augment=False):
    cfg = DataConfig(**TINY_DATA, shards=str(out), stream=StreamConfig(workers=workers, shuffle_buffer=50,
                                                                       resample=resample))  # fmt: skip
    index = ShardIndex.open(str(out))
    decode = SampleDecoder(cfg, index.tokenizer(cfg.max_text_length), index.label_names, index.objective,
                           augment=augment)  # fmt: skip
    return ShardLoader(index, cfg, decode, batch_size=batch_size, seed=0, rank=rank, world_size=world_size)


def test_pack_keeps_every_row_once_with_the_in_memory_split(packed):
    out, result = packed
    data = prepare_data(DataConfig(**TINY_DATA), seed=0)
    index = json.loads((out / "index.json").read_text())
    assert index["label_names"] == data.label_names
    for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
        assert index["splits"][name]["rows"] == len(split)
        assert index["splits"][name]["samples"] == len(split.images)  # one sample per distinct image
    assert len(index["splits"]["train"]["shards"]) > 1  # 20 kB shards: several
    # validation is carved exactly as in-memory training carves it, and streams back every row once
    shard_index = ShardIndex.open(str(out))
    decode = SampleDecoder(DataConfig(**TINY_DATA), shard_index.tokenizer(12), index["label_names"],
                           index["objective"], augment=False)  # fmt: skip
    batches = list(split_batches(shard_index, "val", decode, samples_per_batch=7, on_error="raise"))
    rows = torch.cat([b.index for b in batches])
    assert sorted(rows.tolist()) == sorted(data.val.source_rows)
    labels = torch.cat([b.label for b in batches])
    by_row = dict(zip(data.val.source_rows, data.val.labels.tolist(), strict=True))
    assert labels.tolist() == [by_row[r] for r in rows.tolist()]


def test_a_table_keeps_its_original_image_bytes(tiny_table, tmp_path):
    table = tiny_table()["data"]["path"]
    out = tmp_path / "packed"
    pack(DataConfig(name="table", path=table, image_size=32), out)
    with tarfile.open(next(out.glob("train-*.tar"))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        png = next(name for name in members if name.endswith(".png"))
        record = json.loads(tar.extractfile(png.replace(".png", ".json")).read())
        source = record["source"]
        assert tar.extractfile(png).read() == open(source, "rb").read()


def test_pack_refuses_a_folder_that_holds_shards_and_bad_sizes(packed):
    out, _ = packed
    with pytest.raises(DataError, match="already holds packed shards"):
        pack(DataConfig(**TINY_DATA), out)
    with pytest.raises(DataError, match="expected a size"):
        parse_size("lots")
    assert parse_size("256MB") == 256_000_000


def test_an_epoch_is_reproducible_and_resumes_at_the_exact_batch(packed):
    out, _ = packed
    loader = _loader(out, workers=2)
    loader.set_epoch(1)
    full = [b.index for b in loader]
    assert len(full) == len(loader) and len(loader) % 2 == 0
    loader.set_epoch(1)
    assert all(torch.equal(a, b.index) for a, b in zip(full, loader, strict=True))
    for done in (1, 3):  # an odd count: worker 0 has delivered one batch more than worker 1
        loader.set_epoch(1)
        loader.skip_batches(done)
        rest = [b.index for b in loader]
        assert len(rest) == len(full) - done
        assert all(torch.equal(a, b) for a, b in zip(full[done:], rest, strict=True))  # nothing repeated or skipped
    loader.set_epoch(2)
    assert not all(torch.equal(a, b.index) for a, b in zip(full, loader, strict=False))


def test_augmentation_is_seeded_per_batch(packed):
    out, _ = packed
    loader = _loader(out, augment=True)
    loader.set_epoch(0)
    first = [b.image for b in loader][2]
    loader.set_epoch(0)
    loader.skip_batches(2)
    assert torch.equal(next(iter(loader)).image, first)


def test_every_rank_takes_the_same_number_of_batches(packed):
    out, _ = packed
    ranks = [_loader(out, rank=r, world_size=3, workers=2) for r in range(3)]
    assert len({len(loader) for loader in ranks}) == 1
    counts = []
    for loader in ranks:
        loader.set_epoch(0)
        counts.append(sum(1 for _ in loader))
    assert counts == [len(ranks[0])] * 3


def test_more_streams_than_shards_is_a_clear_error_not_a_hang(packed):
    out, _ = packed
    shards = len(ShardIndex.open(str(out)).shards("train"))
    with pytest.raises(DataError, match=f"{shards} training shard\\(s\\) for {shards * 2 + 2} streams .*hang"):
        _loader(out, world_size=shards + 1, workers=2, resample=False)


def test_a_truncated_shard_is_named_or_skipped(packed, tmp_path, caplog):
    out, _ = packed
    bad = tmp_path / "bad"
    bad.mkdir()
    index = json.loads((out / "index.json").read_text())
    for name in index["splits"]["test"]["shards"] + ["tokenizer.json"]:
        (bad / name).write_bytes((out / name).read_bytes())
    (bad / "index.json").write_text(json.dumps(index))
    shard = bad / index["splits"]["test"]["shards"][0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2 + 100])
    shard_index = ShardIndex.open(str(bad))
    decode = SampleDecoder(DataConfig(**TINY_DATA), shard_index.tokenizer(12), index["label_names"],
                           index["objective"], augment=False)  # fmt: skip
    with pytest.raises(DataError, match=f"shard {shard}: .* bytes where the index says .* \\(truncated\\?\\)"):
        list(split_batches(shard_index, "test", decode, samples_per_batch=8, on_error="raise"))
    rows = sum(len(b) for b in split_batches(shard_index, "test", decode, samples_per_batch=8, on_error="skip"))
    assert 0 < rows < index["splits"]["test"]["rows"]
    assert str(shard) in caplog.text
    # through a pipe the size is unknown: the cut itself is found, inside a member
    piped = ShardIndex.open(str(bad), url=f"pipe:cat {bad}/{{name}}")
    with pytest.raises(DataError, match="shard pipe:cat .*: unreadable after \\d+ sample.*the tar ends"):
        list(split_batches(piped, "test", decode, samples_per_batch=8, on_error="raise"))


def test_train_from_shards_then_predict_and_resume_mid_epoch_exactly(packed, tmp_path):
    from vlfuse.task import load_run, validate_config
    from vlfuse.train.runner import run_training
    from vlfuse.train.trainer import Callback

    out, _ = packed
    cfg_dict = copy.deepcopy(TINY_VQA)
    cfg_dict["data"].update(shards=str(out), stream={"workers": 2, "shuffle_buffer": 40})
    cfg_dict["train"].update(checkpoint_every=3)
    cfg = validate_config(cfg_dict)
    whole = run_training(cfg, tmp_path / "whole")
    assert whole["complete"] and whole["metrics"]["test"]["samples"] == json.loads(
        (out / "index.json").read_text())["splits"]["test"]["rows"]  # fmt: skip

    class Kill(Callback):
        def on_step_end(self, trainer, loss, batch_size):
            if trainer.state.step == len(trainer.train_loader) + 5:
                raise KeyboardInterrupt  # in epoch 2, two steps after its checkpoint at a multiple of 3

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "cut", callbacks=[Kill()])
    resumed = run_training(cfg, tmp_path / "cut", resume=True)
    assert resumed["complete"]
    a = load_run(tmp_path / "whole").model.state_dict()
    b = load_run(tmp_path / "cut").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["metrics"] == whole["metrics"]


def test_cli_packs_trains_from_shards_and_predicts(cli, tmp_path):
    import yaml
    from PIL import Image

    out = tmp_path / "packed"
    sets = ["--set", "data.limit=200", "--set", "data.test_limit=60", "--set", "data.image_size=32"]
    done = cli("data", "pack", "easy-vqa", "--out", out, "--shard-size", "50kB", *sets)
    assert done.returncode == 0, done.stderr
    assert "train: " in done.stdout and "rows/s" in done.stdout
    again = cli("data", "pack", "easy-vqa", "--out", out)
    assert again.returncode == 2 and "already holds packed shards" in again.stderr
    config = copy.deepcopy(TINY_VQA)
    config["train"]["epochs"] = 1
    config["data"]["shards"] = str(out)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    trained = cli("train", path, "--run-dir", tmp_path / "run")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]["test"]["samples"] == 60
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    answer = cli("predict", tmp_path / "run", "--image", tmp_path / "red.png", "--text", "what color is the shape?")
    assert answer.returncode == 0, answer.stderr
    missing = cli("train", path, "--run-dir", tmp_path / "run2", "--set", f"data.shards={tmp_path / 'nowhere'}")
    assert missing.returncode == 2 and "vlfuse data pack" in missing.stderr
    evaluated = cli("evaluate", tmp_path / "run", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert '"samples": 60' in evaluated.stdout


def test_shards_elsewhere_are_read_through_a_url_template(packed, tmp_path):
    """data.stream.url: shards kept apart from their index (object storage, a web server) are opened by WebDataset
    from a `pipe:` command or URL; here `pipe:cat`, as `pipe:aws s3 cp s3://… -` would be on a cluster."""
    out, _ = packed
    elsewhere = tmp_path / "bucket"
    elsewhere.mkdir()
    for tar in out.glob("test-*.tar"):
        (elsewhere / tar.name).write_bytes(tar.read_bytes())
    local = ShardIndex.open(str(out))
    remote = ShardIndex.open(str(out), url=f"pipe:cat {elsewhere}/{{name}}")
    assert remote.shards("test")[0].url.startswith("pipe:cat ")
    decode = SampleDecoder(DataConfig(**TINY_DATA), local.tokenizer(12), local.label_names, local.objective,
                           augment=False)  # fmt: skip
    rows = [b.index for b in split_batches(local, "test", decode, samples_per_batch=8, on_error="raise")]
    piped = [b.index for b in split_batches(remote, "test", decode, samples_per_batch=8, on_error="raise")]
    assert all(torch.equal(a, b) for a, b in zip(rows, piped, strict=True))
    missing = ShardIndex.open(str(out), url=f"pipe:cat {tmp_path}/nowhere/{{name}}")
    with pytest.raises(DataError, match="shard pipe:cat .*nowhere"):
        list(split_batches(missing, "test", decode, samples_per_batch=8, on_error="raise"))
    with pytest.raises(DataError, match="holding \\{name\\}"):
        ShardIndex.open(str(out), url="s3://bucket/shards")


def test_stored_token_ids_equal_tokenizing_again(packed):
    out, _ = packed
    index = ShardIndex.open(str(out))
    tokenizer = index.tokenizer(12)
    assert index.stored_ids_length(tokenizer) == 12 and index.stored_ids_length(index.tokenizer(6)) == 12
    cfg = DataConfig(**TINY_DATA)
    for length in (12, 6, 40):  # as packed; shorter (rows cut now: tokenized again); longer (not cut at packing)
        tokenizer = index.tokenizer(length)
        stored = SampleDecoder(cfg, tokenizer, index.label_names, index.objective, augment=False,
                               stored_ids_length=index.stored_ids_length(tokenizer))  # fmt: skip
        again = SampleDecoder(cfg, tokenizer, index.label_names, index.objective, augment=False)
        pairs = zip(split_batches(index, "val", stored, samples_per_batch=5, on_error="raise"),
                    split_batches(index, "val", again, samples_per_batch=5, on_error="raise"), strict=True)
        for a, b in pairs:
            assert torch.equal(a.text_ids, b.text_ids) and torch.equal(a.text_mask, b.text_mask)


def test_builtin_pixels_stream_back_exactly_and_refit_to_another_size(packed):
    """Built-in sets are packed as their decoded pixels (.npy): lossless, no decoding; another image_size at
    training time resizes them as a decoded file would be."""
    out, _ = packed
    data = prepare_data(DataConfig(**TINY_DATA), seed=0)
    index = ShardIndex.open(str(out))
    with tarfile.open(index.shards("test")[0].url) as tar:
        names = tar.getnames()
        assert any(n.endswith(".npy") for n in names) and not any(n.endswith(".png") for n in names)
    plain = {**TINY_DATA, "augment": {}, "mean": [0.0] * 3, "std": [1.0] * 3}
    decode = SampleDecoder(DataConfig(**plain), index.tokenizer(12), index.label_names, index.objective, augment=False)
    batch = next(iter(split_batches(index, "test", decode, samples_per_batch=4, on_error="raise")))
    row = int(batch.index[0])
    expected = data.test.images[data.test.image_index[data.test.source_rows.index(row)]]  # (C, S, S) uint8
    assert torch.equal((batch.image[batch.image_index[0]] * 255).round().to(torch.uint8), expected)
    smaller = SampleDecoder(DataConfig(**{**plain, "image_size": 24}), index.tokenizer(12), index.label_names,
                            index.objective, augment=False)  # fmt: skip
    resized = next(iter(split_batches(index, "test", smaller, samples_per_batch=4, on_error="raise")))
    assert resized.image.shape[-2:] == (24, 24)


def test_an_image_folder_packs_with_its_subfolders_as_labels_and_sidecar_captions(cli, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    for label, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (folder / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40, 30), colour).save(folder / label / f"{i}.jpg")
            (folder / label / f"{i}.txt").write_text(f"a {label} thing number {i}")
    out = tmp_path / "packed"
    done = cli("data", "pack", folder, "--out", out, "--set", "data.image_size=16", "--set", "data.val_fraction=0.2")
    assert done.returncode == 0, done.stderr
    index = ShardIndex.open(str(out))
    assert index.label_names == ["blue", "red"] and index.rows("train") + index.rows("val") == 12
    decode = SampleDecoder(DataConfig(image_size=16), index.tokenizer(32), index.label_names, index.objective,
                           augment=False)  # fmt: skip
    batch = next(iter(split_batches(index, "train", decode, samples_per_batch=20, on_error="raise")))
    assert batch.text_ids is not None and batch.image.shape[-2:] == (16, 16)
    with tarfile.open(index.shards("train")[0].url) as tar:  # the JPEG files themselves, not re-encoded
        jpg = next(n for n in tar.getnames() if n.endswith(".jpg"))
        source = json.loads(tar.extractfile(jpg.replace(".jpg", ".json")).read())["source"]
        assert tar.extractfile(jpg).read() == open(source, "rb").read()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = cli("data", "pack", empty, "--out", tmp_path / "nothing")
    assert refused.returncode == 2 and "one subfolder per label" in refused.stderr


def test_npy_pixels_are_read_as_numpy_writes_them_and_bad_ones_named():
    import io

    import numpy as np

    from vlfuse.data.shard_io import npy_pixels

    for shape in ((3, 64, 64), (1, 28, 28)):
        array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        buffer = io.BytesIO()
        np.save(buffer, array)
        assert np.array_equal(npy_pixels(buffer.getvalue(), "s"), array)
    with pytest.raises(DataError, match="shard x, sample 1: .npy pixels that are not"):
        npy_pixels(buffer.getvalue()[:-3], "shard x, sample 1")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 8, 8), dtype=np.float32))
    with pytest.raises(DataError, match="not \\(C, H, W\\) or \\(F, C, H, W\\) uint8"):
        npy_pixels(buffer.getvalue(), "s")
    with pytest.raises(DataError, match="not .npy data"):
        npy_pixels(b"\x89PNG....", "s")


def test_video_clips_pack_and_the_video_task_streams_them(tmp_path):
    """moving-shapes clips pack as their decoded frames, (F, C, S, S) .npy; the video task trains from them with its
    frame choice and reports accuracy per kind of question, like an in-memory video run."""
    from tiny_configs import TINY_VIDEO

    from vlfuse.config import VideoDataConfig
    from vlfuse.task import load_run, validate_config
    from vlfuse.train.runner import run_training

    config = copy.deepcopy(TINY_VIDEO)
    out = tmp_path / "clips"
    pack(VideoDataConfig(**config["data"]), out)
    index = ShardIndex.open(str(out))
    with tarfile.open(index.shards("train")[0].url) as tar:
        import io

        import numpy as np

        clip = np.load(io.BytesIO(tar.extractfile(next(n for n in tar.getnames() if n.endswith(".npy"))).read()))
    assert clip.shape == (5, 3, 16, 16) and clip.dtype == np.uint8  # decoded_frames, C, S, S
    config["data"]["shards"] = str(out)
    config["train"]["epochs"] = 1
    summary = run_training(validate_config(config), tmp_path / "run")
    assert summary["complete"] and summary["metrics"]["test"]["samples"] == index.rows("test")
    by_kind = summary["metrics"]["test_by_kind"]
    assert {"order", "appearance"} <= set(by_kind)
    run = load_run(tmp_path / "run")
    assert run.evaluate("test")["samples"] == index.rows("test")
