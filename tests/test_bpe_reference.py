"""The pure-Python reference BPE (tests/_bpe_reference.py) agrees with tiktoken itself.

The reference is what the Rust tokenizer is measured against on generated text, so it is first
checked against the real peer on real text from every language of the corpus, and on the
corner cases of the split patterns.
"""

from __future__ import annotations

from pathlib import Path

import _bpe_reference as ref
import _tokenizer_util as util
import pytest

NAMES = ["gpt2", "cl100k_base", "o200k_base"]
# Enough of every file to meet each script and the emoji, while the O(n²) reference stays fast.
SAMPLE_CHARS = 12_000


@pytest.fixture(scope="module", params=NAMES)
def encoding(request, gpt2_files, tmp_path_factory):
    """(name, ranks, tiktoken.Encoding) for each vocabulary shipped by a PyPI package."""
    name = request.param
    if name == "gpt2":
        ranks = util.gpt2_ranks(*gpt2_files)
    else:
        ranks = util.tiktoken_ranks(util.tiktoken_file(name, tmp_path_factory.mktemp(name)))
    return name, ranks, util.tiktoken_encoding(name, ranks)


@pytest.mark.parametrize("text", util.CORNER_CASES)
def test_reference_matches_tiktoken_on_corner_cases(encoding, text: str) -> None:
    name, ranks, tk = encoding
    ids = ref.encode_ordinary(text, ranks, ref.PATTERNS[name])
    assert ids == tk.encode_ordinary(text)
    assert ref.decode_bytes(ids, ranks) == text.encode("utf-8")


def test_reference_matches_tiktoken_on_corpus(encoding, corpus_dir: Path) -> None:
    name, ranks, tk = encoding
    files = sorted(corpus_dir.rglob("*.txt"))
    assert len(files) > 40, "the shared corpus looks incomplete"
    cache: dict[bytes, list[int]] = {}
    for path in files:
        text = path.read_text(encoding="utf-8")[:SAMPLE_CHARS]
        ids: list[int] = []
        for piece in ref.pretokenize(text, ref.PATTERNS[name]):
            raw = piece.encode("utf-8")
            if raw not in cache:
                cache[raw] = ref.bpe_merge(raw, ranks)
            ids.extend(cache[raw])
        assert ids == tk.encode_ordinary(text), f"{name}: reference differs on {path.name}"


def test_gpt2_original_pattern_splits_as_tiktokens(corpus_dir: Path) -> None:
    # HF tokenizers uses GPT-2's original regex; tiktoken a faster rewrite said to be
    # equivalent. Check that claim, since our ids must equal both.
    for path in sorted(corpus_dir.rglob("*.txt")):
        text = path.read_text(encoding="utf-8")[:SAMPLE_CHARS]
        assert ref.pretokenize(text, ref.GPT2_PATTERN) == ref.pretokenize(
            text, ref.GPT2_ORIGINAL_PATTERN
        ), path.name


def test_every_token_merges_back_to_itself(encoding) -> None:
    # tiktoken returns a piece that is itself a token without merging; HF always merges.
    # They agree only if every token is reachable by merging its own bytes, which holds
    # for these vocabularies; the reference's plain merge loop relies on it too.
    name, ranks, _ = encoding
    unreachable = [t for t, r in ranks.items() if len(t) > 1 and ref.bpe_merge(t, ranks) != [r]]
    assert unreachable == [], f"{name}: {len(unreachable)} tokens unreachable by merging"


def test_patterns_are_tiktokens_own() -> None:
    # Read the patterns out of tiktoken's registry (without its downloads) so that a typo in
    # ours cannot hide behind a matching typo in the peer built from it.
    from unittest import mock

    import tiktoken_ext.openai_public as public

    with mock.patch.object(public, "load_tiktoken_bpe", return_value={}):
        for name in NAMES:
            if name == "gpt2":
                assert ref.PATTERNS[name] == public.r50k_pat_str
            else:
                assert ref.PATTERNS[name] == getattr(public, name)()["pat_str"], name
