"""Text cleaning and a small trainable tokenizer (word-level or BPE) built on HF `tokenizers`.

Special tokens: [PAD]=0, [UNK]=1, [SEP]=2 in vocabularies trained here ([SEP] joins the text columns of one row);
a pretrained tokenizer (kind "pretrained", e.g. MiniLM's WordPiece) keeps its own ids and wraps rows in [CLS] … [SEP].
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from vlfuse.errors import DataError

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

PAD, UNK, SEP, CLS = "[PAD]", "[UNK]", "[SEP]", "[CLS]"
SPECIAL_TOKENS = [PAD, UNK, SEP]  # ids 0, 1, 2 in this order
_FORMAT = "vlfuse-tokenizer"
_VERSION = 1


class _PunctuationToSpace(dict):
    """`str.translate` table mapping every Unicode punctuation character (category P*) to a space, built lazily."""

    def __missing__(self, codepoint: int) -> str | int:
        value: str | int = " " if unicodedata.category(chr(codepoint)).startswith("P") else codepoint
        self[codepoint] = value
        return value


_PUNCTUATION = _PunctuationToSpace()


def clean_text(text: str, *, lowercase: bool = True, strip_punctuation: bool = True) -> str:
    """Normalise text: Unicode NFKC, optional lower-casing, punctuation → spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = text.translate(_PUNCTUATION)
    return " ".join(text.split())


def require_text(value: str, what: str, *, max_chars: int | None = None) -> str:
    """A text a user gave (a question, a post, a query), under one rule everywhere: control characters (NUL and the
    other Unicode "C" categories except tab and newline) are removed, surrounding whitespace is stripped, and what is
    left must be non-empty and at most `max_chars` characters long.

    Raises:
        DataError: naming `what`: empty (nothing but whitespace or control characters), or too long.
    """
    kept = "".join(ch for ch in value if ch in "\t\n" or not unicodedata.category(ch).startswith("C")).strip()
    if not kept:
        raise DataError(f"{what} is empty (nothing but whitespace or control characters); expected a non-empty text")
    if max_chars is not None and len(kept) > max_chars:
        raise DataError(f"{what} is too long: {len(kept):,} characters; expected at most {max_chars:,}")
    return kept


class TextTokenizer:
    """Cleans text with `clean_text`, then maps it to ids with a trained HF tokenizer.

    Build one with `TextTokenizer.train` or `TextTokenizer.load`.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        kind: Literal["word", "bpe", "pretrained"],
        lowercase: bool,
        strip_punctuation: bool,
        max_length: int,
    ) -> None:
        if kind == "pretrained":  # a pretrained model's own vocabulary: the special tokens exist, at its ids
            missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
            if missing:
                raise DataError(f"pretrained tokenizer lacks the special token(s) {', '.join(missing)}")
        else:
            for expected_id, token in enumerate(SPECIAL_TOKENS):
                if tokenizer.token_to_id(token) != expected_id:
                    got = tokenizer.token_to_id(token)
                    raise DataError(f"tokenizer must map {token} to id {expected_id}, got {got}")
        if max_length < 1:
            raise DataError(f"tokenizer max_length must be at least 1, got {max_length}")
        self._tok = tokenizer
        self.kind = kind
        self.lowercase = lowercase
        self.strip_punctuation = strip_punctuation
        self._max_length = max_length
        self._pad, self._unk, self._sep = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)
        cls_id = tokenizer.token_to_id(CLS) if kind == "pretrained" else None
        # BERT-style pretrained encoders read [CLS] text [SEP]; our own vocabularies add nothing
        self._open, self._close = ([cls_id], [self._sep]) if cls_id is not None else ([], [])

    @classmethod
    def pretrained(cls, path: str | Path, *, max_length: int) -> TextTokenizer:
        """A pretrained model's tokenizer (its tokenizer.json, e.g. MiniLM's WordPiece) with vlfuse's interface.

        The HF tokenizer does its own normalisation (MiniLM lower-cases), so vlfuse's cleaning only tidies spaces.
        """
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises plain Exception subclasses
            raise DataError(f"'{path}' is not a readable HF tokenizer.json: {err}") from None
        tok.no_padding()  # vlfuse pads and truncates itself
        tok.no_truncation()
        return cls(tok, kind="pretrained", lowercase=False, strip_punctuation=False, max_length=max_length)

    @classmethod
    def of_encoder(cls, encoder_cfg: Any, *, max_length: int) -> TextTokenizer | None:
        """The tokenizer a pretrained text encoder reads (a config with `pretrained_tokenizer()`, e.g. minilm), or
        None: the encoder learns its embeddings, so a tokenizer is trained on the data."""
        if encoder_cfg is None or not hasattr(encoder_cfg, "pretrained_tokenizer"):
            return None
        return cls.pretrained(encoder_cfg.pretrained_tokenizer(), max_length=max_length)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        kind: Literal["word", "bpe"] = "word",
        vocab_size: int = 10000,
        min_frequency: int = 1,
        lowercase: bool = True,
        strip_punctuation: bool = True,
        max_length: int = 32,
    ) -> TextTokenizer:
        """Learn a vocabulary from `texts` (one string per cell; the special tokens count towards vocab_size)."""
        cleaned = [clean_text(t, lowercase=lowercase, strip_punctuation=strip_punctuation) for t in texts]
        if not any(cleaned):
            raise DataError("cannot train a tokenizer: the training texts are empty after cleaning")
        if kind == "word":
            tok = Tokenizer(models.WordLevel(unk_token=UNK))
            trainer = trainers.WordLevelTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS
            )
        elif kind == "bpe":
            tok = Tokenizer(models.BPE(unk_token=UNK, fuse_unk=True))
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS
            )
        else:
            raise DataError(f"tokenizer kind must be 'word' or 'bpe', got {kind!r}")
        # Punctuation kept by clean_text becomes separate tokens; otherwise split on whitespace only.
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit() if strip_punctuation else pre_tokenizers.Whitespace()
        tok.train_from_iterator(cleaned, trainer=trainer, length=len(cleaned))
        log.info("trained a %s tokenizer: %d tokens from %d texts", kind, tok.get_vocab_size(), len(cleaned))
        return cls(tok, kind=kind, lowercase=lowercase, strip_punctuation=strip_punctuation, max_length=max_length)

    @property
    def pad_id(self) -> int:
        return self._pad

    @property
    def unk_id(self) -> int:
        return self._unk

    @property
    def sep_id(self) -> int:
        return self._sep

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def max_length(self) -> int:
        return self._max_length

    def clean(self, text: str) -> str:
        return clean_text(text, lowercase=self.lowercase, strip_punctuation=self.strip_punctuation)

    def tokenize(self, text: str) -> list[str]:
        """The tokens of one cleaned string (for inspection and reports)."""
        return self._tok.encode(self.clean(text), add_special_tokens=False).tokens

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary entry of each id (for explanations and reports)."""
        return [self._tok.id_to_token(int(i)) or "?" for i in ids]

    def encode(self, rows: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor]:
        """`encode_arrays` as tensors: ids (N, L) long, mask (N, L) bool."""
        import torch  # here, not at the top: the ONNX prediction path tokenizes without torch

        ids, mask = self.encode_arrays(rows)
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def encode_arrays(self, rows: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Encode rows of text columns: columns joined with [SEP], truncated to max_length, right-padded.

        A row with no tokens at all (e.g. only punctuation) becomes a single [UNK], so no row is fully masked.

        Args:
            rows: one list of column strings per row (a bare string counts as a one-column row).

        Returns:
            ids: (N, L) int64, L = max_length, padded with pad_id.
            mask: (N, L) bool, True for real tokens.
        """
        rows = [[r] if isinstance(r, str) else list(r) for r in rows]
        unique = list(dict.fromkeys(cell for row in rows for cell in row))  # texts repeat a lot (VQA questions)
        encoded = self._tok.encode_batch([self.clean(t) for t in unique], add_special_tokens=False)
        lookup = {text: enc.ids for text, enc in zip(unique, encoded, strict=True)}
        length = self._max_length
        padded: dict[tuple[str, ...], list[int]] = {}
        out: list[list[int]] = []
        for row in rows:
            key = tuple(row)
            seq = padded.get(key)
            if seq is None:
                seq = []
                for j, cell in enumerate(row):
                    if j:
                        seq.append(self.sep_id)
                    seq.extend(lookup[cell])
                    if len(seq) >= length:
                        break
                room = length - len(self._open) - len(self._close)
                seq = self._open + (seq[:room] or [self.unk_id]) + self._close
                seq = padded[key] = seq + [self.pad_id] * (length - len(seq))
            out.append(seq)
        ids = np.array(out, dtype=np.int64).reshape(len(rows), length)  # (N, L)
        mask = ids != self.pad_id  # (N, L)
        return ids, mask

    def to_dict(self) -> dict:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "kind": self.kind,
            "lowercase": self.lowercase,
            "strip_punctuation": self.strip_punctuation,
            "max_length": self._max_length,
            "tokenizer": json.loads(self._tok.to_str()),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> TextTokenizer:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise DataError(f"'{source}' is not a vlfuse tokenizer file (expected JSON with format '{_FORMAT}')")
        missing = [k for k in ("kind", "lowercase", "strip_punctuation", "max_length", "tokenizer") if k not in data]
        if missing:
            raise DataError(f"tokenizer file '{source}' lacks the key(s) {', '.join(missing)}")
        try:
            tok = Tokenizer.from_str(json.dumps(data["tokenizer"]))
        except Exception as err:  # the Rust side raises plain Exception subclasses
            raise DataError(f"tokenizer file '{source}': 'tokenizer' is not a valid HF tokenizer: {err}") from None
        return cls(
            tok,
            kind=data["kind"],
            lowercase=bool(data["lowercase"]),
            strip_punctuation=bool(data["strip_punctuation"]),
            max_length=int(data["max_length"]),
        )

    def save(self, path: str | Path) -> None:
        """Write one JSON file holding the HF tokenizer and our cleaning / length settings."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise DataError(f"tokenizer file '{path}' does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"tokenizer file '{path}' cannot be read as JSON: {err}") from None
        return cls.from_dict(data, source=str(path))
