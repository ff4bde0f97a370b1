"""The BPE trainer against a slow reference, against HF tokenizers' BpeTrainer, and its files.

- merges equal the pure-Python recount-everything trainer (tests/_trainer_reference.py);
- merges equal Hugging Face tokenizers' ``BpeTrainer`` on real text (same pretokens, all 256
  bytes as initial alphabet): same counts, same tie-breaking;
- saved files (vocab.json + merges.txt, tokenizer.json) load in HF tokenizers, tiktoken and our
  ``Tokenizer`` and give identical ids on real text;
- bad arguments raise clear exceptions.
"""

from __future__ import annotations

import json
from pathlib import Path

import _trainer_reference as reference
import gpt_hybrid as gh
import pytest
import tiktoken
import tokenizers
from gpt_hybrid import tokenizer_files, training
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import decoders, models, pre_tokenizers, trainers

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_REGEX = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
    r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


def excerpt(path: Path, chars: int, start: int = 0) -> str:
    return path.read_text(encoding="utf-8")[start : start + chars]


@pytest.fixture(scope="module")
def small_corpus(corpus_dir: Path) -> list[str]:
    """~60 kB of real text in several scripts: English prose, Shakespeare, Russian, Chinese."""
    return [
        excerpt(corpus_dir / "english" / "carroll_alice_in_wonderland.txt", 25_000, 2_000),
        excerpt(corpus_dir / "shakespeare" / "tinyshakespeare.txt", 20_000),
        excerpt(corpus_dir / "multilingual" / "russian_eltec_gogol_dostoevsky_tolstoy.txt", 8_000),
        excerpt(corpus_dir / "chinese" / "xiyouji_simplified.txt", 3_000, 1_000),
        "A line with <|endoftext|> inside<|endoftext|>and again <|endoftext|>",
    ]


def as_ids(trained: training.TrainedBpe) -> tuple[list[bytes], list[tuple[int, int]]]:
    tokens = sorted(trained.mergeable_ranks, key=trained.mergeable_ranks.__getitem__)
    ranks = trained.mergeable_ranks
    return tokens, [(ranks[a], ranks[b]) for a, b in trained.merges]


@pytest.mark.parametrize("min_frequency", [0, 150])
def test_merges_equal_slow_reference(small_corpus: list[str], min_frequency: int) -> None:
    specials = ["<|endoftext|>"]
    ours = training._train(small_corpus, 256 + 300 + 1, "gpt2", specials, min_frequency)
    counts = reference.count_words(small_corpus, GPT2_REGEX, specials)
    want_tokens, want_merges = reference.train(counts, 256 + 300, min_frequency)
    got_tokens, got_merges = as_ids(ours)
    assert got_merges == want_merges
    assert got_tokens == want_tokens
    assert ours.special_tokens == {"<|endoftext|>": len(want_tokens)}
    # The special token's text was cut out, so none of its pieces was learned.
    assert not any(b"endoftext" in t or b"<|" in t for t in ours.mergeable_ranks)
    if min_frequency:
        assert len(want_tokens) < 556, "min_frequency should have stopped training early"


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab é'1\n\t.<|>", max_size=60), max_size=6),
    extra=st.integers(min_value=0, max_value=40),
)
def test_random_texts_match_slow_reference(texts: list[str], extra: int) -> None:
    # Small alphabets make ties, overlapping runs and special tokens glued to text common.
    ours = training._train(texts, 256 + extra + 1, "gpt2", ["<|>"])
    counts = reference.count_words(texts, GPT2_REGEX, ["<|>"])
    assert as_ids(ours) == reference.train(counts, 256 + extra)


def test_reference_agrees_on_cl100k_pattern(small_corpus: list[str]) -> None:
    ours = training._train(small_corpus, 256 + 150, "cl100k_base", None)
    counts = reference.count_words(small_corpus, CL100K_REGEX, [])
    assert as_ids(ours) == reference.train(counts, 256 + 150)


def hf_train(
    texts: list[str], vocab_size: int, specials: list[str], pre_tokenizer: object
) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        # All 256 bytes, as ours: otherwise HF's alphabet is only the bytes seen.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # train_from_iterator with whole texts: HF's train(files) would feed one line at a time,
    # which splits whitespace runs around newlines differently from how text is encoded.
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def hf_merges(tok: tokenizers.Tokenizer) -> list[tuple[str, str]]:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def spelled(trained: training.TrainedBpe) -> list[tuple[str, str]]:
    chars = tokenizer_files.bytes_to_unicode()
    return [
        ("".join(chars[b] for b in a), "".join(chars[b] for b in b_)) for a, b_ in trained.merges
    ]


@pytest.mark.parametrize(
    ("files", "vocab_size"),
    [
        (
            [
                "english/austen_pride_and_prejudice.txt",
                "english/stevenson_jekyll_and_hyde.txt",
                "shakespeare/tinyshakespeare.txt",
            ],
            5000,
        ),
        (
            [
                "multilingual/russian_eltec_gogol_dostoevsky_tolstoy.txt",
                "multilingual/greek_eltec_gre_short_fiction.txt",
                "chinese/xiyouji_simplified.txt",
                "multilingual/emoji_unicode_emoji-test_13.1.txt",
            ],
            3000,
        ),
    ],
)
def test_merges_equal_hf_bpe_trainer(corpus_dir: Path, files: list[str], vocab_size: int) -> None:
    texts = [(corpus_dir / f).read_text(encoding="utf-8") for f in files]
    specials = ["<|endoftext|>"]
    ours = training._train(texts, vocab_size, "gpt2", specials)
    hf = hf_train(texts, vocab_size, specials, pre_tokenizers.ByteLevel(add_prefix_space=False))
    # Same merges, in the same order: same counts and same tie-breaking.
    assert spelled(ours) == hf_merges(hf)
    # Same vocabulary; HF numbers special tokens first, we (like GPT-2) put them last.
    hf_vocab = hf.get_vocab()
    chars = tokenizer_files.bytes_to_unicode()
    ours_vocab = {"".join(chars[b] for b in t): r + 1 for t, r in ours.mergeable_ranks.items()}
    assert ours_vocab == {t: i for t, i in hf_vocab.items() if t not in specials}


def tiktoken_encoding(trained: training.TrainedBpe, regex: str) -> tiktoken.Encoding:
    return tiktoken.Encoding(
        "trained",
        pat_str=regex,
        mergeable_ranks=trained.mergeable_ranks,
        special_tokens=trained.special_tokens,
    )


@pytest.fixture(scope="module")
def real_texts(corpus_dir: Path) -> dict[str, str]:
    """A 40 kB excerpt of every corpus file, from its middle."""
    out = {}
    for path in sorted(corpus_dir.rglob("*.txt")):
        text = path.read_text(encoding="utf-8")
        out[path.name] = text[len(text) // 2 : len(text) // 2 + 40_000]
    return out


@pytest.mark.parametrize(
    ("pattern", "regex"), [("gpt2", GPT2_REGEX), ("cl100k_base", CL100K_REGEX)]
)
def test_saved_files_give_identical_ids(
    corpus_dir: Path, real_texts: dict[str, str], tmp_path: Path, pattern: str, regex: str
) -> None:
    files = sorted((corpus_dir / "english").glob("*.txt"))[:6] + [
        corpus_dir / "multilingual" / "russian_eltec_gogol_dostoevsky_tolstoy.txt"
    ]
    specials = ["<|endoftext|>", "<|pad|>"]
    trained = training._train(files, 4000, pattern, specials)
    enc = tiktoken_encoding(trained, regex)

    class Ranked:  # what save_tokenizer reads from a Tokenizer
        special_tokens = trained.special_tokens

        def __init__(self) -> None:
            self.pattern = regex

        def mergeable_ranks(self) -> dict[bytes, int]:
            return trained.mergeable_ranks

    written = tokenizer_files.save_tokenizer(Ranked(), tmp_path)
    assert sorted(p.name for p in written) == [
        "merges.txt",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    hf_json = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf_json.get_vocab_size() == 4000
    hf_files = tokenizers.Tokenizer(
        models.BPE.from_file(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    )
    hf_files.pre_tokenizer = hf_json.pre_tokenizer
    hf_files.decoder = decoders.ByteLevel()
    for name, text in real_texts.items():
        want = enc.encode_ordinary(text)
        assert hf_json.encode(text, add_special_tokens=False).ids == want, name
        assert hf_files.encode(text, add_special_tokens=False).ids == want, name
        assert hf_json.decode(want) == text, name
    with_specials = "one<|endoftext|>two <|pad|><|endoftext|>"
    assert hf_json.encode(with_specials).ids == enc.encode(with_specials, allowed_special="all")


def test_merges_file_layout(tmp_path: Path) -> None:
    trained = training._train(["hello hello hello world world"], 262, "gpt2", ["<|endoftext|>"])

    class Ranked:
        special_tokens = trained.special_tokens
        pattern = GPT2_REGEX

        def mergeable_ranks(self) -> dict[bytes, int]:
            return trained.mergeable_ranks

    tokenizer_files.save_tokenizer(Ranked(), tmp_path)
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2"
    assert lines[1:] == [f"{a} {b}" for a, b in spelled(trained)]
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert list(vocab)[:3] == ["!", '"', "#"]
    assert vocab["<|endoftext|>"] == 261 and len(vocab) == 262
    config = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert config["added_tokens"][0]["content"] == "<|endoftext|>"
    assert config["added_tokens"][0]["special"] is True
    assert config["pre_tokenizer"]["type"] == "ByteLevel"


def test_merges_from_ranks_recovers_gpt2_vocab_bpe(gpt2_files: tuple[Path, Path]) -> None:
    encoder_json, vocab_bpe = gpt2_files
    encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    byte_of = {c: b for b, c in tokenizer_files.bytes_to_unicode().items()}
    ranks = {bytes(byte_of[c] for c in t): i for t, i in encoder.items() if t != "<|endoftext|>"}
    merges = tokenizer_files.merges_from_ranks(ranks)
    chars = tokenizer_files.bytes_to_unicode()
    lines = [f"{''.join(chars[x] for x in a)} {''.join(chars[x] for x in b)}" for a, b in merges]
    want = [line for line in vocab_bpe.read_text(encoding="utf-8").split("\n")[1:] if line]
    assert len(want) == 50_000
    assert lines == want


def test_files_texts_and_threads_agree(corpus_dir: Path, tmp_path: Path) -> None:
    paths = [corpus_dir / "english" / "dickens_christmas_carol.txt", corpus_dir / "README.md"]
    texts = [p.read_text(encoding="utf-8") for p in paths]
    from_files = training._train(paths, 1000, num_threads=1)
    assert training._train(texts, 1000, num_threads=2) == from_files
    assert training._train(iter(texts), 1000) == from_files
    assert training._train(paths[0], 1000) == training._train(texts[0], 1000)


def test_training_stops_when_nothing_is_left_to_merge() -> None:
    trained = training._train(["ab ab"], 100_000, special_tokens=None)
    assert [t for t in trained.mergeable_ranks if len(t) > 1] == [b"ab", b" ab"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"vocab_size": 256}, ValueError, r"vocab_size: 256 is too small; the minimum is 257"),
        ({"vocab_size": 300.0}, TypeError, "vocab_size: expected int"),
        ({"vocab_size": True}, TypeError, "vocab_size: expected int"),
        ({"vocab_size": 300, "pattern": "(unclosed"}, ValueError, "pattern: invalid split pattern"),
        ({"vocab_size": 300, "pattern": ""}, ValueError, "pattern: must not be empty"),
        ({"vocab_size": 300, "min_frequency": -1}, ValueError, "min_frequency: -1"),
        ({"vocab_size": 300, "num_threads": 0}, ValueError, "num_threads: 0"),
        ({"vocab_size": 300, "special_tokens": "<|x|>"}, TypeError, r"\[.<\|x\|>.\]"),
        ({"vocab_size": 300, "special_tokens": ["a", "a"]}, ValueError, "duplicates"),
        ({"vocab_size": 300, "special_tokens": [""]}, ValueError, r"special_tokens\[0\]"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        training._train(["some text"], **kwargs)


def test_bad_inputs(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError) as info:
        training._train([missing], 300)
    assert info.value.filename == str(missing)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 ok".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not valid UTF-8 at byte 3"):
        training._train([latin1], 300)
    with pytest.raises(TypeError, match=r"texts_or_files\[1\]: expected str .* got bytes"):
        training._train(["ok", b"bytes"], 300)
    with pytest.raises(TypeError, match="texts_or_files: expected"):
        training._train(42, 300)  # type: ignore[arg-type]


def test_train_bpe_is_exported() -> None:
    assert gh.train_bpe is training.train_bpe
    assert "train_bpe" in gh.__all__


def test_transformers_autotokenizer_loads_saved_files(tmp_path: Path) -> None:
    import transformers

    trained = training._train(["Hello world, hello there. " * 20], 300, "gpt2", ["<|endoftext|>"])

    class Ranked:
        special_tokens = trained.special_tokens
        pattern = GPT2_REGEX

        def mergeable_ranks(self) -> dict[bytes, int]:
            return trained.mergeable_ranks

    tokenizer_files.save_tokenizer(Ranked(), tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    enc = tiktoken_encoding(trained, GPT2_REGEX)
    text = "Hello there, world!<|endoftext|>"
    assert auto(text)["input_ids"] == enc.encode(text, allowed_special="all")
    assert (
        auto.eos_token == "<|endoftext|>"
        and auto.eos_token_id == trained.special_tokens["<|endoftext|>"]
    )


@pytest.mark.parametrize(
    ("extra", "specials", "match"),
    [
        ({b"abc": 256}, {}, r"not a BPE vocabulary: token b'abc' \(rank 256\)"),
        ({b"ab": 255}, {}, "two tokens share a rank"),
        ({}, {"!": 256}, "special token '!' .* collides"),
        ({}, {"<|x|>": 3}, r"special token '<\|x\|>' \(id 3\) collides"),
    ],
)
def test_save_refuses_what_is_not_byte_level_bpe(
    tmp_path: Path, extra: dict[bytes, int], specials: dict[str, int], match: str
) -> None:
    class Ranked:
        special_tokens = specials
        pattern = GPT2_REGEX

        def mergeable_ranks(self) -> dict[bytes, int]:
            return {**{bytes([b]): b for b in range(256)}, **extra}

    with pytest.raises(ValueError, match=match):
        tokenizer_files.save_tokenizer(Ranked(), tmp_path)

    class MissingByte(Ranked):
        def mergeable_ranks(self) -> dict[bytes, int]:
            return {bytes([b]): b for b in range(1, 256)}

    with pytest.raises(ValueError, match=r"no token for byte\(s\) \['0x0'\]"):
        tokenizer_files.save_tokenizer(MissingByte(), tmp_path)


@pytest.mark.parametrize("pattern", ["gpt2", "cl100k_base", "o200k_base"])
def test_long_runs_of_one_class_train(pattern: str) -> None:
    # A backtracking regex engine gives up on runs this long; the scanners are linear.
    for text, first in [
        ("a" + " " * 1_000_000 + "b", (b" ", b" ")),
        ("é" * 500_000, (b"\xc3", b"\xa9")),
        ("'" * 500_000, (b"'", b"'")),
    ]:
        trained = training._train([text], 280, pattern, None)
        assert trained.merges[0] == first, (pattern, text[:3])


def test_train_bpe_returns_a_tokenizer(corpus_dir: Path, real_texts: dict[str, str]) -> None:
    files = [
        corpus_dir / "english" / "stevenson_jekyll_and_hyde.txt",
        corpus_dir / "multilingual" / "greek_eltec_gre_short_fiction.txt",
    ]
    tok = gh.train_bpe(files, 3000, special_tokens=["<|endoftext|>", "<|pad|>"])
    trained = training._train(files, 3000, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert isinstance(tok, gh.Tokenizer)
    assert tok.n_vocab == 3000
    assert tok.mergeable_ranks() == trained.mergeable_ranks
    assert tok.special_tokens == {"<|endoftext|>": 2998, "<|pad|>": 2999}
    assert tok.eot_token == 2998
    enc = tiktoken_encoding(trained, GPT2_REGEX)
    for name, text in real_texts.items():
        ids = tok.encode_ordinary(text)
        assert ids == enc.encode_ordinary(text), name
        assert tok.decode(ids) == text, name
    assert tok.encode("a<|pad|>", allowed_special="all") == [tok.encode_single_token("a"), 2999]


@pytest.mark.parametrize("pattern", ["gpt2", "cl100k_base", "o200k_base"])
def test_save_pretrained_loads_back_with_identical_ids(
    corpus_dir: Path, real_texts: dict[str, str], tmp_path: Path, pattern: str
) -> None:
    files = sorted((corpus_dir / "english").glob("*.txt"))[6:9] + [
        corpus_dir / "chinese" / "xiyouji_simplified.txt"
    ]
    tok = gh.train_bpe(files, 4000, pattern=pattern)
    tok.save_pretrained(tmp_path)
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    ours_json = gh.Tokenizer.from_pretrained(tmp_path)
    ours_files = gh.Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    for name, text in real_texts.items():
        want = tok.encode_ordinary(text)
        assert hf.encode(text, add_special_tokens=False).ids == want, name
        assert ours_json.encode_ordinary(text) == want, name
        if pattern == "gpt2":  # vocab.json + merges.txt carry no pattern: GPT-2's is assumed
            assert ours_files.encode_ordinary(text) == want, name
    assert ours_json.special_tokens == tok.special_tokens
    assert ours_json.n_vocab == tok.n_vocab == hf.get_vocab_size()


@pytest.mark.parametrize("module", [training, tokenizer_files])
def test_docstring_examples_run(module: object) -> None:
    import doctest

    result = doctest.testmod(module, verbose=False)
    assert result.attempted > 0 and result.failed == 0
