"""The embedding index: hand-checkable search, file round trip, incremental add, backends, model fingerprint."""

import pytest
import torch
import torch.nn.functional as F

from vlfuse.errors import CheckpointError, DataError
from vlfuse.retrieval import index as index_module
from vlfuse.retrieval.index import EmbeddingIndex


def hand_index(backend="exact"):
    """Four items on known directions of a 3-d space."""
    idx = EmbeddingIndex(3, kind="image", fingerprint="abc", run="runs/a", backend=backend)
    vectors = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.6, 0.8, 0], [0, 0, 1.0]]), dim=1)
    idx.add(vectors, ["x.png", "y.png", "xy.png", "z.png"], ["x", "y", "xy", None])
    return idx


@pytest.mark.parametrize("backend", ["exact", "hnsw"])
def test_search_ranks_a_hand_checkable_set(backend):
    idx = hand_index(backend)
    hits = idx.hits(torch.tensor([0.8, 0.0, 0.6]), 3)  # cosines: x 0.8, y 0, xy 0.48, z 0.6
    assert [h.source for h in hits] == ["x.png", "z.png", "xy.png"]
    assert [round(h.score, 4) for h in hits] == [0.8, 0.6, 0.48]
    assert [h.rank for h in hits] == [1, 2, 3] and hits[2].label == "xy" and hits[1].label is None
    assert [h.source for h in idx.hits(torch.tensor([0.0, 0.0, 1.0]), 10)][0] == "z.png"  # k capped at 4
    assert len(idx.hits(torch.tensor([0.0, 0.0, 1.0]), 10)) == 4


@pytest.mark.parametrize("backend", ["exact", "hnsw"])
def test_round_trip_and_incremental_add(tmp_path, backend):
    data = F.normalize(torch.randn(300, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    whole = EmbeddingIndex(16, kind="image", fingerprint="f", backend=backend)
    whole.add(data, [f"s{i}" for i in range(300)])
    grown = EmbeddingIndex(16, kind="image", fingerprint="f", backend=backend)
    grown.add(data[:200], [f"s{i}" for i in range(200)])
    grown.save(tmp_path / "a.index")
    loaded = EmbeddingIndex.load(tmp_path / "a.index")
    assert loaded.active_backend == backend and len(loaded) == 200
    ann_before = loaded.ann
    loaded.add(data[200:], [f"s{i}" for i in range(200, 300)])  # no rebuild: the same graph object grows
    assert loaded.ann is ann_before
    loaded.save(tmp_path / "a.index")
    again = EmbeddingIndex.load(tmp_path / "a.index")
    assert again.sources == whole.sources and torch.allclose(again.embeddings, whole.embeddings)
    _, mine = again.search(data, 1)
    assert torch.equal(mine[:, 0], torch.arange(300))  # every item finds itself, old and new
    scores_a, pos_a = again.search(data[:20], 5)
    scores_b, pos_b = whole.search(data[:20], 5)
    assert torch.allclose(scores_a, scores_b, atol=1e-5)
    if backend == "exact":
        assert torch.equal(pos_a, pos_b)


def test_auto_switches_to_hnsw_when_the_index_grows(monkeypatch):
    monkeypatch.setattr(index_module, "AUTO_HNSW_MIN_ITEMS", 50)
    idx = EmbeddingIndex(8, kind="image", fingerprint="f")
    data = F.normalize(torch.randn(80, 8), dim=1)
    idx.add(data[:40], [str(i) for i in range(40)])
    assert idx.active_backend == "exact"
    idx.add(data[40:], [str(i) for i in range(40, 80)])
    assert idx.active_backend == "hnsw"
    assert torch.equal(idx.search(data, 1)[1][:, 0], torch.arange(80))


def test_query_from_another_model_is_refused(tmp_path):
    idx = hand_index()
    idx.check_model("abc", "runs/a")
    with pytest.raises(CheckpointError, match=r"built by a different model .*fingerprint abc.*runs/b.*fingerprint zzz"):
        idx.check_model("zzz", "runs/b", tmp_path / "x.index")


def test_bad_index_files_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        EmbeddingIndex.load(tmp_path / "none.index")
    (tmp_path / "junk.index").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="junk.index' cannot be read"):
        EmbeddingIndex.load(tmp_path / "junk.index")
    with pytest.raises(DataError, match="width 3"):
        hand_index().add(torch.zeros(2, 5), ["a", "b"])
    with pytest.raises(DataError, match="unknown"):
        EmbeddingIndex(3, kind="image", fingerprint="f", backend="annoy")
