from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vlfuse.data.text import TextTokenizer, clean_text, require_text
from vlfuse.errors import DataError

TEXTS = ["What colour is the shape?", "Is there a red circle?", "the shape is blue", "what is it"]


def test_clean_text() -> None:
    assert clean_text("  Ｈｅｌｌｏ,\tWORLD!!  ﬁne… ") == "hello world fine"  # NFKC folds width and ligatures
    assert clean_text("Don't stop", strip_punctuation=True) == "don t stop"
    assert clean_text("Keep. Case", lowercase=False, strip_punctuation=False) == "Keep. Case"
    assert clean_text("«quoted»—dash") == "quoted dash"
    assert clean_text("a\u00a0b\n\nc") == "a b c"


def test_special_token_ids_and_oov() -> None:
    tok = TextTokenizer.train(TEXTS, kind="word", max_length=8)
    assert (tok.pad_id, tok.unk_id, tok.sep_id) == (0, 1, 2)
    assert tok.max_length == 8
    ids, mask = tok.encode([["what is the zebra"]])
    assert ids.shape == (1, 8) and ids.dtype == torch.long and mask.dtype == torch.bool
    assert mask[0].tolist() == [True] * 4 + [False] * 4
    assert ids[0, 3].item() == tok.unk_id and ids[0, :3].ne(tok.unk_id).all()
    assert ids[0, 4:].eq(tok.pad_id).all()


def test_columns_joined_with_sep_truncated_and_padded() -> None:
    tok = TextTokenizer.train(TEXTS, max_length=6)
    ids, mask = tok.encode([["what is it", "red circle"], ["is there a red circle the shape is blue"], ["!!!"]])
    assert ids[0, 3].item() == tok.sep_id and mask[0].sum() == 6
    assert mask[1].all()  # truncated to max_length
    assert ids[2].tolist() == [tok.unk_id] + [0] * 5  # nothing left after cleaning → one [UNK]
    assert torch.equal(tok.encode(["what is it"])[0], tok.encode([["what is it"]])[0])  # bare strings are 1 column


def test_min_frequency_and_vocab_size() -> None:
    tok = TextTokenizer.train(TEXTS, min_frequency=2)
    assert tok.tokenize("what is the shape") == ["what", "is", "the", "shape"]
    assert tok.encode([["colour"]])[0][0, 0].item() == tok.unk_id  # seen once only
    small = TextTokenizer.train(TEXTS, vocab_size=8)
    assert small.vocab_size == 8


def test_bpe_splits_unseen_words() -> None:
    tok = TextTokenizer.train(TEXTS * 5, kind="bpe", vocab_size=60)
    pieces = tok.tokenize("shapes")
    assert len(pieces) >= 2 and "[UNK]" not in pieces
    ids, _ = tok.encode([["shape ☃"]])
    assert tok.unk_id in ids[0].tolist()


def test_save_load_round_trip(tmp_path: Path) -> None:
    for kind in ("word", "bpe"):
        tok = TextTokenizer.train(TEXTS, kind=kind, vocab_size=50, lowercase=False, max_length=7)
        path = tmp_path / f"{kind}.json"
        tok.save(path)
        data = json.loads(path.read_text())
        assert data["format"] == "vlfuse-tokenizer" and data["kind"] == kind and "tokenizer" in data
        again = TextTokenizer.load(path)
        rows = [["What is the shape?", "blue"], ["Unknown words here"]]
        assert torch.equal(tok.encode(rows)[0], again.encode(rows)[0])
        assert (again.vocab_size, again.max_length, again.lowercase, again.kind) == (tok.vocab_size, 7, False, kind)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="tokenizer file '.*absent.json' does not exist"):
        TextTokenizer.load(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="cannot be read as JSON"):
        TextTokenizer.load(bad)
    bad.write_text('{"format": "other"}')
    with pytest.raises(DataError, match="not a vlfuse tokenizer file"):
        TextTokenizer.load(bad)


def test_train_on_empty_texts() -> None:
    with pytest.raises(DataError, match="empty after cleaning"):
        TextTokenizer.train(["", "?!"])


@pytest.mark.parametrize("empty", ["", "  ", "\t\n", "\x00" * 5, " \x00\x1f\u200b "])
def test_require_text_refuses_empty_by_one_rule(empty) -> None:
    with pytest.raises(DataError, match="field 'q' is empty"):
        require_text(empty, "field 'q'")


def test_require_text_strips_controls_and_counts_characters_not_bytes() -> None:
    assert require_text("  what\x00 colour?\n", "q") == "what colour?"
    assert require_text("é" * 10, "q", max_chars=10) == "é" * 10  # 20 bytes in UTF-8, 10 characters
    with pytest.raises(DataError, match=r"q is too long: 11 characters; expected at most 10"):
        require_text("é" * 11, "q", max_chars=10)
