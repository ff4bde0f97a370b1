"""Property-based fuzzing of the Python API (hypothesis), over the surfaces the cargo-fuzz
targets cover in Rust: the vocabulary loaders, encode/decode, the incremental decoder,
``gh.sample`` and ``gh.train_bpe``.

The only allowed outcomes are a correct result or a documented exception (ValueError,
TypeError, KeyError, OSError). A Rust panic reaches Python as ``PanicException``, which
derives from ``BaseException``: it is never caught here and fails the test. Runs are
derandomized so that CI is deterministic; the long random runs are the cargo-fuzz ones
(docs/reliability.md).
"""

from __future__ import annotations

import base64
import codecs
import gzip
import json
import tempfile
from pathlib import Path

import gpt_hybrid as gh
import numpy as np
import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DOCUMENTED = (ValueError, TypeError, KeyError, OSError)
FAST = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def byte_table() -> list[str]:
    """GPT-2's bytes_to_unicode as a list indexed by byte (the alphabet of vocab files)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)
    table = dict(zip(bs, cs, strict=True))
    return [chr(table[b]) for b in range(256)]


T = byte_table()
SAMPLE = "Hello world, it's 2024!\r\n  héllo 世界 😀 don't\n\n\tx  "
SPECIAL = "<|endoftext|>"
# Ranks for a small tiktoken-style vocabulary: every byte, then merges that build words.
WORDS = [b" t", b"he", b" the", b"aa", b"aaaa", b"in", b"er", b"\xe4\xb8", b"\xe4\xb8\x96"]
RANKS = {bytes([b]): b for b in range(256)} | {w: 256 + i for i, w in enumerate(WORDS)}


def names_file(exc: Exception, *names: str) -> bool:
    return isinstance(exc, OSError) or any(n in str(exc) for n in names)


def roundtrips(tok: gh.Tokenizer, *texts: str) -> None:
    """A loaded tokenizer encodes and decodes every text back, specials included."""
    for text in texts:
        ids = tok.encode(text, allowed_special="all")
        assert tok.decode(ids) == text
        assert all(0 <= i < tok.n_vocab for i in ids)


# ----- loaders -----------------------------------------------------------------------------

tokens = st.lists(st.sampled_from(T), min_size=1, max_size=3).map("".join)
ids = st.one_of(st.integers(0, 300), st.integers(-3, 2**40))
merge_lines = st.lists(
    st.one_of(
        st.tuples(tokens, tokens).map(" ".join),
        st.text(max_size=8),
        st.just("#version: 0.2"),
    ),
    max_size=8,
)


@st.composite
def vocab_and_merges(draw) -> tuple[bytes, bytes]:
    """A mostly valid vocab.json + merges.txt, with mutations; sometimes raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64)), draw(st.binary(max_size=64))
    vocab = {T[b]: b for b in range(256)}
    lines = draw(merge_lines)
    for line in lines:
        left, _, right = line.partition(" ")
        if draw(st.booleans()) and left and right and (left + right) not in vocab:
            vocab[left + right] = len(vocab)
    extra = draw(st.dictionaries(st.one_of(tokens, st.text(max_size=4)), ids, max_size=3))
    vocab.update(extra)
    for key in draw(st.lists(st.sampled_from(sorted(vocab)), max_size=2)):
        vocab.pop(key, None)
    text = json.dumps(vocab, ensure_ascii=draw(st.booleans()))
    merges = "\n".join(lines)
    if draw(st.booleans()):
        merges = merges.replace("\n", "\r\n")
    bom = "\ufeff" if draw(st.integers(0, 7)) == 0 else ""
    return (bom + text).encode(), merges.encode()


@FAST
@given(files=vocab_and_merges(), openai_names=st.booleans())
def test_vocab_merges_loader(files: tuple[bytes, bytes], openai_names: bool) -> None:
    names = ("encoder.json", "vocab.bpe") if openai_names else ("vocab.json", "merges.txt")
    with tempfile.TemporaryDirectory() as d:
        vocab, merges = Path(d) / names[0], Path(d) / names[1]
        vocab.write_bytes(files[0])
        merges.write_bytes(files[1])
        try:
            tok = gh.Tokenizer.from_files(vocab, merges)
        except DOCUMENTED as e:
            assert names_file(e, *names), e
            return
    roundtrips(tok, SAMPLE)
    listed = json.loads(files[0].decode("utf-8-sig"))
    # Every vocabulary entry keeps its id (as an ordinary or a special token).
    for key, i in listed.items():
        want = bytes(T.index(c) for c in key) if all(c in T for c in key) else key.encode()
        assert tok.decode_single_token_bytes(i) == want


# Split regexes of tokenizer.json: fine ones, and one that does not compile.
REGEXES = ["\\S+|\\s+", "(", "\\p{L}+|\\p{N}+|[^\\p{L}\\p{N}]"]


@st.composite
def tokenizer_json(draw) -> bytes:
    """A tokenizer.json with its structure varied (model type, merges form, pre-tokenizer)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    vocab = {T[b]: b for b in range(256)}
    merges = []
    for left, right in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "a")]:
        vocab[left + right] = len(vocab)
        merges.append(f"{left} {right}" if draw(st.booleans()) else [left, right])
    merges += draw(st.lists(st.tuples(tokens, tokens).map(" ".join), max_size=3))
    pre = draw(
        st.sampled_from(
            [
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
                {"type": "ByteLevel", "add_prefix_space": True},
                {"type": "Whitespace"},
                None,
                {
                    "type": "Sequence",
                    "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": draw(st.sampled_from(REGEXES))}},
                        {"type": "ByteLevel", "use_regex": False},
                    ],
                },
            ]
        )
    )
    added = [{"id": draw(ids), "content": draw(st.sampled_from([SPECIAL, "Ġt", ""]))}]
    doc = {
        "added_tokens": draw(st.sampled_from([[], added])),
        "normalizer": draw(st.sampled_from([None, {"type": "NFC"}])),
        "pre_tokenizer": pre,
        "model": {
            "type": draw(st.sampled_from(["BPE", "BPE", "WordPiece", "Unigram"])),
            "vocab": vocab,
            "merges": merges,
        },
    }
    return json.dumps(doc).encode()


@FAST
@given(data=tokenizer_json())
def test_tokenizer_json_loader(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokenizer.json"
        path.write_bytes(data)
        try:
            tok = gh.Tokenizer.from_pretrained(d)
        except DOCUMENTED as e:
            assert names_file(e, "tokenizer.json"), e
            return
    doc = json.loads(data)
    for t in doc["added_tokens"]:
        assert tok.special_tokens[t["content"]] == t["id"]
    if doc["pre_tokenizer"].get("type") != "Sequence":
        roundtrips(tok, SAMPLE)  # custom regexes may drop text between matches, by design


@st.composite
def tiktoken_file(draw) -> tuple[bytes, dict[bytes, int] | None]:
    """Rank lines, mostly valid, with mutations; returns the file and the expected ranks."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64)), None
    ranks = dict(RANKS)
    extra = draw(st.dictionaries(st.binary(min_size=2, max_size=3), st.integers(0, 2**33)))
    ranks.update(extra)
    lines = [base64.b64encode(t) + b" %d" % r for t, r in ranks.items()]
    mutate = draw(st.integers(0, 5))
    if mutate == 1:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.binary(max_size=8)))
    elif mutate == 2:
        del lines[draw(st.integers(0, 255))]  # a missing single byte
    sep = draw(st.sampled_from([b"\n", b"\r\n"]))
    raw = sep.join(lines) + sep
    if draw(st.booleans()):
        raw = gzip.compress(raw)
    unique = len(set(ranks.values())) == len(ranks)
    return raw, (ranks if mutate == 0 and unique else None)


@FAST
@given(file=tiktoken_file(), pattern=st.sampled_from(["gpt2", "cl100k_base", "o200k_base"]))
def test_tiktoken_loader(file: tuple[bytes, dict[bytes, int] | None], pattern: str) -> None:
    raw, want = file
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ranks.tiktoken"
        path.write_bytes(raw)
        try:
            tok = gh.Tokenizer.from_tiktoken(path, pattern, special_tokens={})
        except DOCUMENTED as e:
            assert names_file(e, "ranks.tiktoken"), e
            assert want is None or max(want.values()) > len(want) + (1 << 20), e
            return
    if want is not None:
        assert tok.mergeable_ranks() == want
    roundtrips(tok, SAMPLE)


# ----- encode / decode ---------------------------------------------------------------------

TOK = gh.Tokenizer.from_ranks(RANKS, pattern="gpt2", special_tokens={SPECIAL: 300})
PEER = tiktoken.Encoding(
    "fuzz", pat_str=TOK.pattern, mergeable_ranks=RANKS, special_tokens={SPECIAL: 300}
)
texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["a", " ", "the", "\n", "世", "😀", SPECIAL, "'s"]), max_size=60).map(
        "".join
    ),
)


@FAST
@given(text=texts)
def test_encode_matches_tiktoken_and_round_trips(text: str) -> None:
    assert TOK.encode_ordinary(text) == PEER.encode_ordinary(text)
    ids = TOK.encode(text, allowed_special="all")
    assert ids == PEER.encode(text, allowed_special="all")
    assert TOK.decode(ids) == text
    if SPECIAL in text:
        with pytest.raises(ValueError, match="endoftext"):
            TOK.encode(text)
    else:
        assert TOK.encode(text) == ids


@FAST
@given(text=st.text(alphabet=st.characters(codec=None, categories=["Cs", "Ll", "Zs"])))
def test_encode_lone_surrogates(text: str) -> None:
    # tiktoken replaces lone surrogates by U+FFFD; so must we (or raise ValueError).
    try:
        ids = TOK.encode_ordinary(text)
    except DOCUMENTED:
        return
    assert ids == PEER.encode_ordinary(text)


@FAST
@given(ids=st.lists(st.one_of(st.integers(0, 310), st.integers(-(2**70), 2**70)), max_size=40))
def test_decode_arbitrary_ids(ids: list[int]) -> None:
    known = all(0 <= i < 265 or i == 300 for i in ids)
    try:
        raw = TOK.decode_bytes(ids)
        text = TOK.decode(ids)
    except KeyError:
        assert not known
        return
    assert known
    assert raw == PEER.decode_bytes(ids)
    assert text == raw.decode("utf-8", "replace")


@FAST
@given(bad=st.sampled_from([[1.5], ["a"], [None], "abc", 5, [[1]]]))
def test_decode_wrong_types(bad: object) -> None:
    with pytest.raises(DOCUMENTED):
        TOK.decode(bad)  # type: ignore[arg-type]


@FAST
@given(
    ids=st.lists(st.one_of(st.integers(0, 264), st.integers(-2, 400)), max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=10),
)
def test_incremental_decoder(ids: list[int], cuts: list[int]) -> None:
    dec = TOK.incremental_decoder()
    peer = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out, want = [], []
    bounds = sorted({0, len(ids), *(c for c in cuts if c <= len(ids))})
    for a, b in zip(bounds, bounds[1:], strict=False):
        chunk = ids[a:b]
        try:
            out.append(dec.push(chunk))
        except KeyError:
            assert any(not (0 <= i < 265 or i == 300) for i in chunk)
            continue  # nothing of a failed push is consumed
        want.append(peer.decode(TOK.decode_bytes(chunk)))
        assert "".join(out) == "".join(want)
    out.append(dec.flush())
    want.append(peer.decode(b"", final=True))
    assert "".join(out) == "".join(want)


# ----- sampler -----------------------------------------------------------------------------

any_float = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
f32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)


@st.composite
def sampler_call(draw) -> tuple[np.ndarray, dict]:
    rows, vocab = draw(st.integers(1, 3)), draw(st.integers(1, 40))
    small = st.integers(-40, 40).map(lambda v: v / 8)
    x = draw(st.lists(st.one_of(small, f32), min_size=rows * vocab, max_size=rows * vocab))
    logits = np.array(x, dtype=np.float32).reshape(rows, vocab)

    def param(neutral, plausible):
        return draw(st.one_of(st.just(neutral), plausible, any_float))

    kw = {
        "temperature": param(1.0, st.floats(0, 4)),
        "top_k": draw(st.one_of(st.just(0), st.integers(-3, vocab + 3), st.integers(2**62))),
        "top_p": param(1.0, st.floats(0, 1)),
        "min_p": param(0.0, st.floats(0, 1)),
        "repetition_penalty": param(1.0, st.floats(0, 3)),
        "presence_penalty": param(0.0, st.floats(-2, 2)),
        "frequency_penalty": param(0.0, st.floats(-2, 2)),
        "seed": draw(st.one_of(st.none(), st.integers(-5, 2**65))),
        "step": draw(st.integers(0, 10)),
    }
    if draw(st.booleans()):
        kw["history"] = [
            draw(st.lists(st.integers(-2, vocab + 2), max_size=6)) for _ in range(rows)
        ]
    return logits, kw


@settings(FAST, max_examples=300)
@given(
    call=sampler_call(),
    logprobs=st.booleans(),
    n_top=st.one_of(st.integers(-1, 5), st.integers(2**62, 2**66)),
)
def test_sample_arbitrary_floats_and_params(
    call: tuple[np.ndarray, dict], logprobs: bool, n_top: int
) -> None:
    logits, kw = call
    try:
        out = gh.sample(logits, **kw, return_logprobs=logprobs, num_logprobs=n_top)
    except DOCUMENTED:
        return
    got = out.token_ids if logprobs else out
    assert got.shape == (logits.shape[0],)
    assert ((got >= 0) & (got < logits.shape[1])).all()
    # The drawn token has a finite, nonzero probability under the final distribution.
    dist_kw = {k: v for k, v in kw.items() if k not in ("seed", "step")}
    p = gh.probs(logits, **dist_kw)
    chosen = p[np.arange(len(got)), got]
    assert np.isfinite(chosen).all() and (chosen > 0).all()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-3)


# ----- trainer -----------------------------------------------------------------------------


@settings(FAST, max_examples=60)
@given(
    corpus=st.lists(st.text(max_size=60), max_size=5),
    vocab_size=st.one_of(st.integers(200, 330), st.integers(-3, 3)),
    pattern=st.sampled_from(["gpt2", "cl100k_base", "o200k_base", "\\S+|\\s+", "(", ""]),
    specials=st.one_of(st.none(), st.lists(st.sampled_from([SPECIAL, "<x>", ""]), max_size=2)),
    min_frequency=st.integers(-1, 3),
)
def test_train_bpe_small_corpora(corpus, vocab_size, pattern, specials, min_frequency) -> None:
    try:
        tok = gh.train_bpe(
            corpus,
            vocab_size,
            pattern=pattern,
            special_tokens=specials,
            min_frequency=min_frequency,
        )
    except DOCUMENTED:
        return
    assert tok.n_vocab <= vocab_size
    for text in corpus:
        ids = tok.encode(text, allowed_special="all")
        # A custom pattern drops the text between its matches (tiktoken's rule).
        if pattern in ("gpt2", "cl100k_base", "o200k_base"):
            assert tok.decode(ids) == text


def test_huge_top_k_and_num_logprobs_mean_all_tokens() -> None:
    # Found by test_sample_arbitrary_floats_and_params: both raised OverflowError.
    x = np.array([[0.0, 1.0, 2.0]], np.float32)
    assert gh.sample(x, temperature=0, top_k=2**64).tolist() == [2]
    assert gh.probs(x, top_k=2**70).tolist() == gh.probs(x).tolist()
    out = gh.sample(x, temperature=0, return_logprobs=True, num_logprobs=2**70)
    assert out.top_token_ids.tolist() == [[2, 1, 0]]
