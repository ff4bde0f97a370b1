"""A slow, obviously correct byte-level BPE trainer, to check the native one against.

Every step recounts every adjacent pair of every word from scratch, picks the most frequent
(ties: the smallest pair of ids), and rewrites every word. Nothing is incremental.
"""

from __future__ import annotations

from collections import Counter

import regex


def gpt2_byte_order() -> list[int]:
    """Byte values by id in GPT-2's vocabulary: printable ones first, then the rest."""
    printable = [b for b in range(256) if chr(b).isprintable() and b != 0x20 and b != 0xAD]
    # GPT-2's printable set: '!'..'~', '¡'..'¬', '®'..'ÿ' (Latin-1 without space, controls,
    # NBSP and soft hyphen).
    assert printable == [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    return printable + [b for b in range(256) if b not in printable]


def count_words(texts: list[str], pattern: str, special_tokens: list[str]) -> Counter[bytes]:
    """Pretoken counts: cut out the special tokens, split the rest with ``pattern``."""
    counts: Counter[bytes] = Counter()
    splitter = None
    if special_tokens:
        alternation = "|".join(regex.escape(s) for s in sorted(special_tokens, key=len)[::-1])
        splitter = regex.compile(alternation)
    word_re = regex.compile(pattern)
    for text in texts:
        segments = splitter.split(text) if splitter else [text]
        for segment in segments:
            for word in word_re.findall(segment):
                counts[word.encode("utf-8")] += 1
    return counts


def train(
    word_counts: Counter[bytes], vocab_size: int, min_frequency: int = 0
) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Tokens by id and merges (pairs of ids), learned by recounting at every step."""
    tokens = [bytes([b]) for b in gpt2_byte_order()]
    id_of = {t: i for i, t in enumerate(tokens)}
    words = [([id_of[bytes([b])] for b in w], c) for w, c in word_counts.items()]
    merges: list[tuple[int, int]] = []
    while len(tokens) < vocab_size:
        pairs: Counter[tuple[int, int]] = Counter()
        for ids, c in words:
            for pair in zip(ids, ids[1:], strict=False):
                pairs[pair] += c
        if not pairs:
            break
        # Highest count; among equal counts the smallest pair (the largest negated pair).
        best = max(pairs, key=lambda p: (pairs[p], -p[0], -p[1]))
        if pairs[best] < max(min_frequency, 1):
            break
        new_token = tokens[best[0]] + tokens[best[1]]
        if new_token not in id_of:
            id_of[new_token] = len(tokens)
            tokens.append(new_token)
        new_id = id_of[new_token]
        merges.append(best)
        words = [(_merge(ids, best, new_id), c) for ids, c in words]
    return tokens, merges


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
