"""A slow, obviously correct byte-level BPE in pure Python, the yardstick for the Rust tokenizer.

It does what the textbook says and nothing clever:

1. split the text with the encoding's regex (the third-party ``regex`` module understands the
   possessive quantifiers and ``\\p{..}`` classes of tiktoken's patterns as written);
2. turn each piece into its UTF-8 bytes, one part per byte;
3. repeatedly merge the adjacent pair whose concatenation has the lowest rank, leftmost first on
   ties, until no adjacent pair is a token.

Ranks are tiktoken's ``mergeable_ranks`` (token bytes → rank == id), so for GPT-2's files a rank
is also the token id. Each merge scans the whole piece, so a piece of n bytes costs O(n²) per
merge: keep inputs to a few kilobytes.
"""

from __future__ import annotations

import regex

# The split patterns, exactly as tiktoken (tiktoken_ext/openai_public.py) writes them.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
# GPT-2's original pattern (OpenAI's encoder.py; HF tokenizers' ByteLevel pre-tokenizer);
# tiktoken's is a faster equivalent of it.
GPT2_ORIGINAL_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
PATTERNS = {
    "gpt2": GPT2_PATTERN,
    "r50k_base": GPT2_PATTERN,
    "cl100k_base": CL100K_PATTERN,
    "o200k_base": O200K_PATTERN,
}


def pretokenize(text: str, pattern: str) -> list[str]:
    """Split ``text`` into the pieces that BPE merges independently.

    >>> pretokenize("Hello  world's!", GPT2_PATTERN)
    ['Hello', ' ', ' world', "'s", '!']
    """
    return [m.group() for m in regex.finditer(pattern, text)]


def bpe_merge(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Merge the bytes of one piece by lowest rank; return the ranks (ids) of the parts.

    >>> bpe_merge(b"ab", {b"a": 0, b"b": 1, b"ab": 2})
    [2]
    """
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best_rank, best_i = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            # Strictly lower: on a tie the leftmost pair wins, as in tiktoken and HF.
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best_i = rank, i
        if best_rank is None:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return [ranks[p] for p in parts]


def encode_ordinary(text: str, ranks: dict[bytes, int], pattern: str) -> list[int]:
    """Encode ``text`` (no special tokens) the slow, obvious way.

    >>> encode_ordinary("ab ab", {b"a": 0, b"b": 1, b" ": 2, b"ab": 3, b" a": 4}, GPT2_PATTERN)
    [3, 4, 1]
    """
    ids: list[int] = []
    for piece in pretokenize(text, pattern):
        ids.extend(bpe_merge(piece.encode("utf-8"), ranks))
    return ids


def decode_bytes(ids: list[int], ranks: dict[bytes, int]) -> bytes:
    """Concatenate the bytes of the tokens ``ids``.

    >>> decode_bytes([3, 4, 1], {b"a": 0, b"b": 1, b" ": 2, b"ab": 3, b" a": 4})
    b'ab ab'
    """
    by_id = {rank: token for token, rank in ranks.items()}
    return b"".join(by_id[i] for i in ids)
