"""Training a byte-level BPE tokenizer on your own text: :func:`train_bpe`.

The work is native (``gpt_hybrid._native.BpeTrainer``): pretokens are counted in parallel with
the GIL released, then merges are learned with pair counts updated incrementally. Ties between
equally frequent pairs go to the smallest pair of ids, as in Hugging Face tokenizers'
``BpeTrainer`` (see docs/trainer.md). The result is a :class:`gpt_hybrid.Tokenizer` laid out
like GPT-2's: 256 single bytes, then learned tokens, then the special tokens.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from gpt_hybrid import _native

if TYPE_CHECKING:
    from gpt_hybrid.tokenizer import Tokenizer

TextOrFile = Union[str, "os.PathLike[str]"]

# Texts are handed to the native counter in batches of about this many characters, so an
# iterator over a large corpus is never held in memory whole.
_TEXT_BATCH_CHARS = 64 * 1024 * 1024
# Files are read natively; a batch of files is read and counted together (in parallel).
_FILE_BATCH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class TrainedBpe:
    """The raw outcome of training, before it becomes a :class:`Tokenizer`.

    Attributes:
        mergeable_ranks: token bytes -> rank (256 single bytes, then learned tokens).
        merges: the merges in the order learned, as (left bytes, right bytes).
        special_tokens: special token -> id (ids follow the ranks).
        pattern: the pretokenization pattern (a name or a regex) used.
    """

    mergeable_ranks: dict[bytes, int]
    merges: list[tuple[bytes, bytes]]
    special_tokens: dict[str, int]
    pattern: str


def train_bpe(
    texts_or_files: TextOrFile | Iterable[TextOrFile],
    vocab_size: int,
    pattern: str = "gpt2",
    special_tokens: Sequence[str] | None = ("<|endoftext|>",),
    min_frequency: int = 0,
    num_threads: int | None = None,
) -> Tokenizer:
    """Trains a byte-level BPE tokenizer.

    Args:
        texts_or_files: a ``str`` (a text), an ``os.PathLike`` (a UTF-8 file, read whole), or
            an iterable of these, e.g. ``[Path("a.txt"), Path("b.txt")]`` or a generator of
            strings. A plain ``str`` is always text, never a file name.
        vocab_size: the size of the vocabulary, special tokens included (as in Hugging Face
            tokenizers): 256 byte tokens + learned tokens + special tokens. Training stops
            earlier if no pair is left to merge.
        pattern: how text is split before merging: ``"gpt2"`` (also ``"r50k_base"``,
            ``"p50k_base"``), ``"cl100k_base"``, ``"o200k_base"``, or a regex.
        special_tokens: strings that get their own ids after the learned tokens, in this
            order. They are cut out of the training text and never learned as merges.
        min_frequency: stop when the most frequent pair occurs fewer times than this.
        num_threads: threads for counting (default: all cores).

    Returns:
        A :class:`gpt_hybrid.Tokenizer`; ``save_pretrained(dir)`` writes it as vocab.json,
        merges.txt and tokenizer.json.

    Raises:
        ValueError: ``vocab_size`` too small, a bad ``pattern`` or argument, a file that is
            not UTF-8.
        OSError: a file cannot be read.
        TypeError: an input that is neither ``str`` nor ``os.PathLike``.

    >>> import gpt_hybrid as gh
    >>> tok = gh.train_bpe(["low lower lowest"] * 10, vocab_size=260)
    >>> tok.n_vocab
    260
    >>> tok.decode(tok.encode("lowest"))
    'lowest'
    """
    from gpt_hybrid.tokenizer import Tokenizer

    trained = _train(
        texts_or_files, vocab_size, pattern, special_tokens, min_frequency, num_threads
    )
    return Tokenizer.from_ranks(
        trained.mergeable_ranks, pattern=pattern, special_tokens=trained.special_tokens
    )


def _train(
    texts_or_files: TextOrFile | Iterable[TextOrFile],
    vocab_size: int,
    pattern: str = "gpt2",
    special_tokens: Sequence[str] | None = ("<|endoftext|>",),
    min_frequency: int = 0,
    num_threads: int | None = None,
) -> TrainedBpe:
    """:func:`train_bpe` without building the Tokenizer (tests compare these merges)."""
    specials = _check_special_tokens(special_tokens)
    _check_int("vocab_size", vocab_size, minimum=256 + len(specials))
    _check_int("min_frequency", min_frequency, minimum=0)
    if num_threads is not None:
        _check_int("num_threads", num_threads, minimum=1)
    if not isinstance(pattern, str):
        raise TypeError(f"pattern: expected str, got {type(pattern).__name__}")

    trainer = _native.BpeTrainer(pattern, specials, num_threads)
    _feed(trainer, texts_or_files)
    tokens, merges = trainer.train(vocab_size - len(specials), min_frequency)
    ranks = {token: rank for rank, token in enumerate(tokens)}
    return TrainedBpe(
        mergeable_ranks=ranks,
        merges=[(tokens[a], tokens[b]) for a, b in merges],
        special_tokens={s: len(tokens) + i for i, s in enumerate(specials)},
        pattern=pattern,
    )


def _feed(trainer: _native.BpeTrainer, texts_or_files: TextOrFile | Iterable[TextOrFile]) -> None:
    """Streams texts and files into ``trainer`` in bounded batches."""
    if isinstance(texts_or_files, (str, os.PathLike)):
        texts_or_files = [texts_or_files]
    elif not isinstance(texts_or_files, Iterable):
        raise TypeError(
            "texts_or_files: expected str, os.PathLike or an iterable of them, "
            f"got {type(texts_or_files).__name__}"
        )
    texts: list[str] = []
    text_chars = 0
    files: list[str] = []
    file_bytes = 0
    for index, item in enumerate(texts_or_files):
        if isinstance(item, str):
            texts.append(item)
            text_chars += len(item)
            if text_chars >= _TEXT_BATCH_CHARS:
                trainer.feed_texts(texts)
                texts, text_chars = [], 0
        elif isinstance(item, os.PathLike):
            path = os.fspath(item)
            if not isinstance(path, str):
                raise TypeError(f"texts_or_files[{index}]: bytes paths are not supported")
            files.append(path)
            try:
                file_bytes += os.stat(path).st_size
            except OSError:
                pass  # the native reader reports it, with the path
            if file_bytes >= _FILE_BATCH_BYTES:
                trainer.feed_files(files)
                files, file_bytes = [], 0
        else:
            raise TypeError(
                f"texts_or_files[{index}]: expected str (text) or os.PathLike (file), "
                f"got {type(item).__name__}"
            )
    if texts:
        trainer.feed_texts(texts)
    if files:
        trainer.feed_files(files)


def _check_special_tokens(special_tokens: Sequence[str] | None) -> list[str]:
    if special_tokens is None:
        return []
    if isinstance(special_tokens, str):
        raise TypeError(
            "special_tokens: expected a sequence of str, got a str; "
            f"write special_tokens=[{special_tokens!r}]"
        )
    specials = list(special_tokens)
    for i, s in enumerate(specials):
        if not isinstance(s, str) or not s:
            raise ValueError(f"special_tokens[{i}]: expected a non-empty str, got {s!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens: duplicates in {specials!r}")
    return specials


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__}")
    if value < minimum:
        hint = ""
        if name == "vocab_size":
            hint = " (256 single-byte tokens + the special tokens)"
        raise ValueError(f"{name}: {value} is too small; the minimum is {minimum}{hint}")
