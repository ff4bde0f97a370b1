"""Writing a byte-level BPE tokenizer in Hugging Face's file layouts.

:func:`save_tokenizer` (called by ``Tokenizer.save_pretrained``) writes:

- ``vocab.json`` + ``merges.txt``: the GPT-2 layout (OpenAI's encoder.json/vocab.bpe under
  Hugging Face's names), tokens spelled with GPT-2's byte-to-unicode alphabet;
- ``tokenizer.json``: a Hugging Face tokenizers file (byte-level BPE model, the split
  pattern as pre-tokenizer, special tokens as ``added_tokens``);
- ``tokenizer_config.json``: tells ``transformers.AutoTokenizer`` which class to use and the
  end-of-text token.

Our tokenizer stores ranks (tiktoken's representation: merge the adjacent pair whose
concatenation has the lowest rank); Hugging Face's BPE stores merges. The merges are
recovered from the ranks the way tiktoken's own converters do it: for each token, in rank
order, run BPE on its bytes using only lower ranks; that must end in exactly two parts, which
are the token's merge. Both libraries then produce the same ids.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

# Every spelling of GPT-2's split pattern; these become Hugging Face's ByteLevel pre-tokenizer
# with its built-in regex (what GPT-2's own tokenizer.json says). Any other pattern is written
# as a Split pre-tokenizer with the regex followed by a regex-less ByteLevel.
_GPT2_PATTERNS = frozenset(
    {
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
        r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    }
)


class _RankedTokenizer(Protocol):
    """What :func:`save_tokenizer` needs from a tokenizer."""

    @property
    def special_tokens(self) -> Mapping[str, int]: ...

    @property
    def pattern(self) -> str: ...

    def mergeable_ranks(self) -> Mapping[bytes, int]: ...


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (as in OpenAI's encoder.py).

    >>> bytes_to_unicode()[ord(" ")]
    'Ġ'
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def save_tokenizer(tok: _RankedTokenizer, directory: str | os.PathLike[str]) -> list[Path]:
    """Writes ``tok`` as vocab.json, merges.txt, tokenizer.json and tokenizer_config.json.

    Args:
        tok: a byte-level BPE tokenizer (a :class:`gpt_hybrid.Tokenizer`): its
            ``mergeable_ranks()`` must hold all 256 single bytes.
        directory: created if missing; existing files of these names are replaced (each file
            is written to a temporary name first, so none is ever left half-written).

    Returns:
        The paths written.

    Raises:
        ValueError: the ranks are not a byte-level BPE vocabulary (a byte missing, or a token
            that is not two earlier tokens merged).
        OSError: the directory cannot be written.

    >>> import tempfile, gpt_hybrid as gh
    >>> tok = gh.train_bpe(["hello hello world"], vocab_size=262)
    >>> sorted(p.name for p in save_tokenizer(tok, tempfile.mkdtemp()))
    ['merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json']
    """
    ranks = dict(tok.mergeable_ranks())
    specials = dict(tok.special_tokens)
    pattern = tok.pattern
    byte_chars = bytes_to_unicode()

    def spell(token: bytes) -> str:
        return "".join(byte_chars[b] for b in token)

    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(
            f"cannot save as byte-level BPE: no token for byte(s) {[hex(b) for b in missing[:8]]}"
        )
    vocab: dict[str, int] = {spell(t): r for t, r in sorted(ranks.items(), key=lambda kv: kv[1])}
    rank_set = set(ranks.values())
    if len(rank_set) != len(ranks):
        raise ValueError("cannot save: two tokens share a rank")
    for content, id_ in sorted(specials.items(), key=lambda kv: kv[1]):
        if content in vocab or id_ in rank_set:
            raise ValueError(
                f"cannot save: special token {content!r} (id {id_}) collides with an ordinary "
                "token's spelling or id"
            )
        vocab[content] = id_
    merges = [f"{spell(a)} {spell(b)}" for a, b in merges_from_ranks(ranks)]

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    eot = "<|endoftext|>" if "<|endoftext|>" in specials else None
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "".join(m + "\n" for m in merges),
        "tokenizer.json": json.dumps(
            _tokenizer_json(vocab, merges, specials, pattern), ensure_ascii=False, indent=2
        ),
        "tokenizer_config.json": json.dumps(_tokenizer_config(specials, eot), indent=2),
    }
    written = []
    for name, text in files.items():
        written.append(_write_atomically(out / name, text))
    return written


def merges_from_ranks(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge of each multi-byte token, in rank order, recovered from the ranks.

    >>> merges_from_ranks({**{bytes([b]): b for b in range(256)}, b"ab": 256, b"abc": 257})
    [(b'a', b'b'), (b'ab', b'c')]
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = _bpe(ranks, token, max_rank=rank)
        if len(parts) != 2:
            raise ValueError(
                f"not a BPE vocabulary: token {token!r} (rank {rank}) is not the merge of two "
                f"lower-ranked tokens (BPE with lower ranks gives {parts!r})"
            )
        merges.append((parts[0], parts[1]))
    return merges


def _bpe(ranks: Mapping[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Rank-based BPE of ``token`` using only ranks below ``max_rank`` (slow, short inputs)."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best_i, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best_i, best_rank = i, r
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def _tokenizer_json(
    vocab: dict[str, int], merges: list[str], specials: dict[str, int], pattern: str
) -> dict[str, Any]:
    byte_level = {"add_prefix_space": False, "trim_offsets": True}
    if pattern in _GPT2_PATTERNS:
        pre_tokenizer: dict[str, Any] = {"type": "ByteLevel", **byte_level, "use_regex": True}
    else:
        pre_tokenizer = {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": _onig_pattern(pattern)},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", **byte_level, "use_regex": False},
            ],
        }
    added = [
        {
            "id": id_,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for content, id_ in sorted(specials.items(), key=lambda kv: kv[1])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        # GPT-2's own tokenizer.json: no prefix space added, offsets left as they are.
        "post_processor": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": False,
            "use_regex": True,
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def _onig_pattern(pattern: str) -> str:
    r"""``pattern`` spelled so that Oniguruma (Hugging Face's regex engine) reads it alike.

    Oniguruma takes ``X{1,3}+`` as ``(X{1,3})+``, not as a possessive ``{1,3}``: cl100k's
    ``\p{N}{1,3}+`` would then match a whole run of digits. At the end of an alternative a
    possessive and a greedy quantifier match the same, so the ``+`` is dropped there.

    >>> print(_onig_pattern(r"\p{N}{1,3}+|\s+"))
    \p{N}{1,3}|\s+
    """
    return re.sub(r"(\{\d+(?:,\d*)?\})\+(?=\||$)", r"\1", pattern)


def _tokenizer_config(specials: dict[str, int], eot: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    if eot is not None:
        # GPT-2's convention: one end-of-text token serves as bos, eos and unk.
        config.update(bos_token=eot, eos_token=eot, unk_token=eot)
    extra = [s for s in sorted(specials, key=specials.__getitem__) if s != eot]
    if extra:
        config["additional_special_tokens"] = extra
    return config


def _write_atomically(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
