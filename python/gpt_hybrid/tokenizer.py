"""Byte-level BPE tokenization with tiktoken's API, backed by the Rust core.

:class:`Tokenizer` loads GPT-2-style vocabularies (Hugging Face ``vocab.json`` + ``merges.txt``,
OpenAI ``encoder.json`` + ``vocab.bpe``, ``tokenizer.json``, tiktoken ``.tiktoken`` rank files)
and gives ids identical to tiktoken's and Hugging Face tokenizers'. Special-token policy lives
here (as in tiktoken's ``core.py``); the mechanics (splitting, merging, decoding) are native.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Literal

from gpt_hybrid import _native

__all__ = ["IncrementalDecoder", "Tokenizer"]

# Special tokens tiktoken gives each of its encodings, used when a rank file comes alone.
_DEFAULT_SPECIALS: dict[str, dict[str, int]] = {
    "gpt2": {"<|endoftext|>": 50256},
    "r50k_base": {"<|endoftext|>": 50256},
    "p50k_base": {"<|endoftext|>": 50256},
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}

AllowedSpecial = Literal["all"] | Collection[str]


def _check_text(text: object, name: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be str, not {type(text).__name__}")
    return text


def _fix_surrogates(text: str) -> str:
    # Lone surrogates cannot be UTF-8; tiktoken replaces each by U+FFFD (and joins valid pairs).
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _disallowed_error(token: str) -> ValueError:
    return ValueError(
        f"Encountered text corresponding to disallowed special token {token!r}.\n"
        "If you want this text to be encoded as a special token, "
        f"pass it to `allowed_special`, e.g. `allowed_special={{{token!r}, ...}}`.\n"
        "If you want this text to be encoded as normal text, disable the check for this token "
        "by passing `disallowed_special=(enc.special_tokens_set - {" + repr(token) + "})`.\n"
        "To disable this check for all special tokens, pass `disallowed_special=()`.\n"
    )


class IncrementalDecoder:
    """Turns a stream of token ids into text, one complete character at a time.

    ``push`` returns only text whose UTF-8 bytes are complete, holding back the start of a
    character split across tokens; ``flush`` ends the stream (incomplete bytes become U+FFFD).
    No byte is ever dropped.

    >>> dec = Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).incremental_decoder()
    >>> dec.push(list("é".encode())[:1]), dec.push(list("é".encode())[1:]), dec.flush()
    ('', 'é', '')
    """

    def __init__(self, native: _native.IncrementalDecoder) -> None:
        self._native = native

    def push(self, ids: Sequence[int]) -> str:
        """Adds ids; returns the newly completed text (``KeyError`` for an unknown id).

        >>> dec = Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).incremental_decoder()
        >>> dec.push([104, 105])
        'hi'
        """
        return self._native.push(ids)

    def flush(self) -> str:
        """Ends the stream: returns what was held back, incomplete characters as U+FFFD.

        >>> dec = Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).incremental_decoder()
        >>> dec.push([0xE4]), dec.flush()
        ('', '\ufffd')
        """
        return self._native.flush()

    @property
    def pending(self) -> bytes:
        """Bytes held back, waiting for the rest of a character."""
        return self._native.pending


class Tokenizer:
    """A byte-level BPE tokenizer with tiktoken's interface.

    Build one with :meth:`from_files`, :meth:`from_pretrained`, :meth:`from_tiktoken` or
    :meth:`from_ranks`. Instances are immutable and safe to share between threads. Each keeps,
    between calls, the merges of the short multi-token pieces it has seen (up to 65,536 per
    thread encoding at once, in at most 8 caches of ~4 MB at most), so that later calls skip
    them.

    >>> tok = Tokenizer.from_ranks({bytes([b]): b for b in range(256)} | {b"hi": 256})
    >>> tok.encode("hi!")
    [256, 33]
    """

    def __init__(self, native: _native.Encoding, *, name: str = "") -> None:
        self._core = native
        self.name = name
        self._specials: dict[str, int] = dict(native.special_tokens)
        self._specials_set = frozenset(self._specials)

    # ----- constructors -----

    @classmethod
    def from_files(
        cls, vocab: str | os.PathLike[str], merges: str | os.PathLike[str], *, pattern: str = "gpt2"
    ) -> Tokenizer:
        """Loads Hugging Face ``vocab.json`` + ``merges.txt`` or OpenAI ``encoder.json`` +
        ``vocab.bpe``.

        Vocabulary entries no merge produces (GPT-2's ``<|endoftext|>``) become special tokens.

        Args:
            vocab: path of the JSON token → id map.
            merges: path of the merges list.
            pattern: split pattern: ``"gpt2"``, ``"cl100k_base"``, ``"o200k_base"`` or a regex.

        Raises:
            OSError: a file cannot be read. ValueError: a file is malformed (names file, line).

        >>> tok = Tokenizer.from_files("encoder.json", "vocab.bpe")  # doctest: +SKIP
        >>> tok.encode("Hello world")  # doctest: +SKIP
        [15496, 995]
        """
        native = _native.Encoding.from_files(os.fspath(vocab), os.fspath(merges), pattern)
        return cls(native, name=Path(vocab).parent.name)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Loads a local directory holding ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``
        (or a ``tokenizer.json`` file itself).

        >>> tok = Tokenizer.from_pretrained("gpt2_dir")  # doctest: +SKIP
        """
        p = Path(path)
        if p.is_file():
            return cls(_native.Encoding.from_tokenizer_json(os.fspath(p)), name=p.parent.name)
        if (p / "tokenizer.json").is_file():
            native = _native.Encoding.from_tokenizer_json(os.fspath(p / "tokenizer.json"))
            return cls(native, name=p.name)
        for vocab, merges in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
            if (p / vocab).is_file() and (p / merges).is_file():
                return cls.from_files(p / vocab, p / merges)
        if not p.exists():
            raise FileNotFoundError(2, "No such file or directory", os.fspath(p))
        raise OSError(
            2, "no tokenizer.json or vocab.json + merges.txt in this directory", os.fspath(p)
        )

    @classmethod
    def from_tiktoken(
        cls,
        path: str | os.PathLike[str],
        pattern: str = "cl100k_base",
        special_tokens: dict[str, int] | None = None,
    ) -> Tokenizer:
        """Loads a tiktoken ``.tiktoken`` rank file (plain or gzip-compressed).

        Args:
            path: the rank file.
            pattern: ``"gpt2"``/``"r50k_base"``, ``"cl100k_base"``, ``"o200k_base"`` or a regex.
            special_tokens: text → id; ``None`` gives tiktoken's specials for a named pattern.

        >>> tok = Tokenizer.from_tiktoken("cl100k_base.tiktoken")  # doctest: +SKIP
        """
        if special_tokens is None:
            special_tokens = _DEFAULT_SPECIALS.get(pattern, {})
        native = _native.Encoding.from_tiktoken(
            os.fspath(path), pattern, list(special_tokens.items())
        )
        return cls(native, name=pattern if pattern in _DEFAULT_SPECIALS else Path(path).stem)

    @classmethod
    def from_ranks(
        cls,
        mergeable_ranks: dict[bytes, int],
        *,
        pattern: str = "gpt2",
        special_tokens: dict[str, int] | None = None,
    ) -> Tokenizer:
        """Builds a tokenizer from tiktoken-style ranks (every single byte must have one).

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).n_vocab
        256
        """
        if not isinstance(mergeable_ranks, dict):
            raise TypeError(f"mergeable_ranks must be a dict, not {type(mergeable_ranks).__name__}")
        native = _native.Encoding.from_ranks(
            list(mergeable_ranks.items()), pattern, list((special_tokens or {}).items())
        )
        return cls(native)

    # ----- encoding -----

    def _allowed(self, allowed_special: AllowedSpecial) -> set[str] | None:
        if allowed_special == "all":
            return None
        return set(allowed_special)

    def _disallowed(
        self, allowed: set[str] | None, disallowed_special: AllowedSpecial
    ) -> set[str] | None | Literal[False]:
        """The set to check (None: every special token), or False for no check."""
        if disallowed_special == "all":
            if allowed is None:
                return False
            rest = self._specials_set - allowed
            return (None if not allowed else rest) if rest else False
        d = set(disallowed_special)
        return d if d else False

    def encode(
        self,
        text: str,
        *,
        allowed_special: AllowedSpecial = frozenset(),  # noqa: B006
        disallowed_special: AllowedSpecial = "all",
    ) -> list[int]:
        """Encodes text, with tiktoken's special-token rules.

        Special tokens in ``allowed_special`` (or ``"all"``) become their ids; by default a
        special token anywhere else in the text raises ``ValueError`` (``disallowed_special=()``
        encodes it as ordinary text instead).

        >>> tok = Tokenizer.from_ranks({bytes([b]): b for b in range(256)},
        ...                            special_tokens={"<|end|>": 256})
        >>> tok.encode("a<|end|>", allowed_special="all")
        [97, 256]
        """
        _check_text(text)
        allowed = self._allowed(allowed_special)
        disallowed = self._disallowed(allowed, disallowed_special)
        try:
            return self._encode(text, allowed, disallowed)
        except UnicodeEncodeError:
            return self._encode(_fix_surrogates(text), allowed, disallowed)

    def _encode(self, text: str, allowed: set[str] | None, disallowed: object) -> list[int]:
        if disallowed is not False:
            token = self._core.find_disallowed(text, disallowed)  # type: ignore[arg-type]
            if token is not None:
                raise _disallowed_error(token)
        return self._core.encode(text, allowed)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encodes text, treating special-token text as ordinary text.

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).encode_ordinary("hi")
        [104, 105]
        """
        _check_text(text)
        try:
            return self._core.encode_ordinary(text)
        except UnicodeEncodeError:
            return self._core.encode_ordinary(_fix_surrogates(text))

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        num_threads: int | None = None,
        allowed_special: AllowedSpecial = frozenset(),  # noqa: B006
        disallowed_special: AllowedSpecial = "all",
    ) -> list[list[int]]:
        """Encodes many texts in parallel (native threads, GIL released).

        Args:
            texts: the texts.
            num_threads: worker threads (``None``: one per core).
            allowed_special, disallowed_special: as for :meth:`encode`.

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).encode_batch(["a", "b"])
        [[97], [98]]
        """
        return self._batch(texts, num_threads, allowed_special, disallowed_special, False)

    def encode_ordinary_batch(
        self, texts: Sequence[str], *, num_threads: int | None = None
    ) -> list[list[int]]:
        """Like :meth:`encode_ordinary` on each text, in parallel.

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).encode_ordinary_batch(["a"])
        [[97]]
        """
        return self._batch(texts, num_threads, (), (), True)

    def _batch(
        self,
        texts: Sequence[str],
        num_threads: int | None,
        allowed_special: AllowedSpecial,
        disallowed_special: AllowedSpecial,
        ordinary: bool,
    ) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not a single str")
        texts = list(texts)
        for i, t in enumerate(texts):
            _check_text(t, f"texts[{i}]")
        if num_threads is not None and not isinstance(num_threads, int):
            raise TypeError(f"num_threads must be an int or None, not {type(num_threads).__name__}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        allowed = self._allowed(allowed_special)
        disallowed = self._disallowed(allowed, disallowed_special)
        # The native batch takes None for "no check" and a set otherwise.
        check = None if disallowed is False else (disallowed or set(self._specials_set))
        try:
            return self._core.encode_batch(texts, allowed, check, ordinary, num_threads)
        except UnicodeEncodeError:
            fixed = [_fix_surrogates(t) for t in texts]
            return self._core.encode_batch(fixed, allowed, check, ordinary, num_threads)
        except ValueError as e:
            token = str(e)
            if token in self._specials:
                raise _disallowed_error(token) from None
            raise

    # ----- decoding -----

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """Decodes ids to text; ``errors`` as for :meth:`bytes.decode`.

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).decode([104, 105])
        'hi'
        """
        if errors == "replace":
            return self._core.decode(ids)
        return self._core.decode_bytes(ids).decode("utf-8", errors)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Decodes ids to bytes (``KeyError`` for an unknown id).

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).decode_bytes([255])
        b'\\xff'
        """
        return self._core.decode_bytes(ids)

    def decode_single_token_bytes(self, token: int) -> bytes:
        """The bytes of one token.

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).decode_single_token_bytes(97)
        b'a'
        """
        return self._core.token_bytes(token)

    def decode_tokens_bytes(self, ids: Sequence[int]) -> list[bytes]:
        """The bytes of each token.

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).decode_tokens_bytes([104])
        [b'h']
        """
        return [self._core.token_bytes(i) for i in ids]

    def encode_single_token(self, text_or_bytes: str | bytes) -> int:
        """The id of a single token given its text or bytes (``KeyError`` if none).

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).encode_single_token("a")
        97
        """
        if isinstance(text_or_bytes, str):
            text_or_bytes = text_or_bytes.encode("utf-8")
        if not isinstance(text_or_bytes, bytes | bytearray):
            raise TypeError(f"expected str or bytes, not {type(text_or_bytes).__name__}")
        return self._core.encode_single_token(bytes(text_or_bytes))

    def incremental_decoder(self) -> IncrementalDecoder:
        """A fresh streaming decoder (see :class:`IncrementalDecoder`).

        >>> tok = Tokenizer.from_ranks({bytes([b]): b for b in range(256)})
        >>> tok.incremental_decoder().push([97])
        'a'
        """
        return IncrementalDecoder(self._core.incremental_decoder())

    # ----- vocabulary -----

    @property
    def n_vocab(self) -> int:
        """One more than the largest token id (specials included)."""
        return self._core.n_vocab

    @property
    def max_token_value(self) -> int:
        """The largest token id."""
        return self._core.n_vocab - 1

    @property
    def eot_token(self) -> int | None:
        """The id of ``<|endoftext|>``, or None when there is none."""
        return self._specials.get("<|endoftext|>")

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token texts → ids (a copy)."""
        return dict(self._specials)

    @property
    def special_tokens_set(self) -> set[str]:
        """The special token texts."""
        return set(self._specials_set)

    @property
    def pattern(self) -> str:
        """The split regex."""
        return self._core.pattern

    def mergeable_ranks(self) -> dict[bytes, int]:
        """Ordinary token bytes → ids (tiktoken's ``mergeable_ranks``).

        >>> len(Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).mergeable_ranks())
        256
        """
        return self._core.mergeable_ranks()

    def pretokenize(self, text: str) -> list[str]:
        """The pieces the split pattern cuts ``text`` into, before merging.

        >>> Tokenizer.from_ranks({bytes([b]): b for b in range(256)}).pretokenize("Hi  there")
        ['Hi', ' ', ' there']
        """
        return self._core.pretokenize(_check_text(text))

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Writes ``vocab.json``, ``merges.txt`` and ``tokenizer.json`` into ``directory``.

        >>> tok.save_pretrained("out_dir")  # doctest: +SKIP
        """
        from gpt_hybrid.tokenizer_files import save_tokenizer

        save_tokenizer(self, directory)

    def __repr__(self) -> str:
        pattern = self.pattern if len(self.pattern) <= 40 else self.pattern[:37] + "..."
        specials = ", ".join(sorted(self._specials)[:4])
        if len(self._specials) > 4:
            specials += f", ... ({len(self._specials)})"
        name = f"{self.name!r}, " if self.name else ""
        return (
            f"Tokenizer({name}n_vocab={self.n_vocab}, pattern={pattern!r}, specials=[{specials}])"
        )
