"""Bad input to the tokenizer raises the Python exception a user expects, saying what and where.

Malformed files raise ``ValueError`` naming the file and the line or key; a missing file raises
``OSError`` with its path; an unknown id ``KeyError``; an argument of the wrong type ``TypeError``.
``pytest.raises`` with those types also proves that no case reaches a Rust panic: pyo3 turns a
panic into ``PanicException``, which derives from ``BaseException`` and so matches none of them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
from pathlib import Path

import _tokenizer_util as util
import gpt_hybrid as gh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def assert_names(exc: pytest.ExceptionInfo, path: Path, *where: str) -> None:
    """The message names the file (its path or at least its name) and each of ``where``."""
    msg = str(exc.value)
    assert path.name in msg, f"message does not name {path.name}: {msg!r}"
    for w in where:
        pattern = rf"(?<!\d){re.escape(w)}(?!\d)" if w.isdigit() else re.escape(w)
        assert re.search(pattern, msg), f"message does not name {w!r}: {msg!r}"


# --- files: GPT-2's real ones, copied so that each test can break them ------------------------


@pytest.fixture
def gpt2_copy(gpt2_files, tmp_path: Path) -> tuple[Path, Path]:
    encoder, merges = tmp_path / "vocab.json", tmp_path / "merges.txt"
    shutil.copy(gpt2_files[0], encoder)
    shutil.copy(gpt2_files[1], merges)
    return encoder, merges


def test_the_unbroken_copy_loads(gpt2_copy) -> None:
    # Every test below breaks one thing in these files; this shows the rest is fine.
    tok = gh.Tokenizer.from_files(*gpt2_copy)
    assert tok.decode(tok.encode("hello world")) == "hello world"
    assert gh.Tokenizer.from_pretrained(gpt2_copy[0].parent).n_vocab == tok.n_vocab


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ('{\n"a": 0,\n"b": ,\n"c": 2}\n', "3"),
        ('{\n"a": 0,\n"b": 1\n', "4"),
        ("", "1"),
        ('{"a": 0}\n]', "2"),
    ],
)
def test_malformed_vocab_json(gpt2_copy, content: str, line: str) -> None:
    encoder, merges = gpt2_copy
    encoder.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_files(encoder, merges)
    assert_names(exc, encoder, line)


@pytest.mark.parametrize("content", ['["a", "b"]', '{"a": "zero"}', '{"a": -1}', '{"a": 1.5}'])
def test_vocab_json_of_the_wrong_shape(gpt2_copy, content: str) -> None:
    encoder, merges = gpt2_copy
    encoder.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_files(encoder, merges)
    assert_names(exc, encoder)


def test_duplicate_id_in_vocab_json(gpt2_copy) -> None:
    encoder, merges = gpt2_copy
    vocab = json.loads(encoder.read_text(encoding="utf-8"))
    vocab["hello"] = vocab["world"]
    encoder.write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_files(encoder, merges)
    msg = str(exc.value)
    assert encoder.name in msg and ("hello" in msg or "world" in msg), msg


def _merges_lines(merges: Path) -> int:
    return len(merges.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("bad", ["Ġ", "Ġ t h", "a b c"])
def test_merges_line_with_wrong_field_count(gpt2_copy, bad: str) -> None:
    encoder, merges = gpt2_copy
    line = _merges_lines(merges) + 1
    with merges.open("a", encoding="utf-8") as f:
        f.write(bad + "\n")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_files(encoder, merges)
    assert_names(exc, merges, str(line))


def test_merges_line_in_the_middle(gpt2_copy) -> None:
    encoder, merges = gpt2_copy
    lines = merges.read_text(encoding="utf-8").splitlines()
    lines[99] = "only_one_field"
    merges.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_files(encoder, merges)
    assert_names(exc, merges, "100")


def test_merges_symbol_not_in_vocab(gpt2_copy) -> None:
    encoder, merges = gpt2_copy
    line = _merges_lines(merges) + 1
    with merges.open("a", encoding="utf-8") as f:
        f.write("Ġthe zzzqqq\n")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_files(encoder, merges)
    assert_names(exc, merges, str(line), "zzzqqq")


def test_merges_not_utf8(gpt2_copy) -> None:
    encoder, merges = gpt2_copy
    line = _merges_lines(merges) + 1
    with merges.open("ab") as f:
        f.write(b"\xff\xfe a\n")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_files(encoder, merges)
    assert_names(exc, merges, str(line))


# --- .tiktoken rank files ----------------------------------------------------------------------


def write_tiktoken(path: Path, extra: list[str] = ()) -> Path:
    """A small valid rank file: the 256 bytes, a few merges, then ``extra`` lines (from 262)."""
    tokens = [bytes([b]) for b in range(256)] + [b"he", b"ll", b"hell", b"hello", b" w"]
    lines = [f"{base64.b64encode(t).decode()} {rank}" for rank, t in enumerate(tokens)]
    path.write_text("\n".join(lines + list(extra)) + "\n", encoding="ascii")
    return path


def test_small_tiktoken_file_loads(tmp_path: Path) -> None:
    path = write_tiktoken(tmp_path / "small.tiktoken")
    tok = gh.Tokenizer.from_tiktoken(path, pattern="gpt2", special_tokens={})
    peer = util.tiktoken_encoding("gpt2", util.tiktoken_ranks(path), special_tokens={})
    text = "hello world, hell hello"
    assert tok.encode_ordinary(text) == peer.encode_ordinary(text)
    assert len(tok.encode_ordinary(text)) < len(text.encode())


@pytest.mark.parametrize(
    "bad",
    [
        "@@@@ 261",  # not base64
        "aGk 261",  # bad padding
        "aGk=",  # no rank
        "aGk= x261",  # rank not an integer
        "aGk= 261 7",  # a third field
        "aGk= 3",  # rank 3 again: duplicate rank
        "aGVsbG8= 261",  # b"hello" again: duplicate token
    ],
)
def test_bad_tiktoken_line(tmp_path: Path, bad: str) -> None:
    path = write_tiktoken(tmp_path / "bad.tiktoken", [bad])
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_tiktoken(path, pattern="gpt2")
    assert_names(exc, path, "262")


def test_duplicate_ranks_passed_to_from_ranks() -> None:
    ranks = {bytes([b]): b for b in range(256)} | {b"ab": 97}
    with pytest.raises(ValueError, match="97"):
        gh.Tokenizer.from_ranks(ranks, pattern="gpt2")
    ok = {bytes([b]): b for b in range(256)}
    with pytest.raises(ValueError, match="<\\|x\\|>"):
        gh.Tokenizer.from_ranks(ok, pattern="gpt2", special_tokens={"<|x|>": 5})


def test_bad_pattern_argument(tmp_path: Path) -> None:
    path = write_tiktoken(tmp_path / "small.tiktoken")
    with pytest.raises(ValueError, match="pattern"):
        gh.Tokenizer.from_tiktoken(path, pattern="(unclosed")


# --- tokenizer.json ----------------------------------------------------------------------------


def test_tokenizer_json_of_gpt2_loads(gpt2_files, tmp_path: Path) -> None:
    hf = util.hf_gpt2(*gpt2_files)
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = gh.Tokenizer.from_pretrained(tmp_path)
    text = "hello <|endoftext|> world"
    assert tok.encode(text, allowed_special="all") == hf.encode(text).ids


@pytest.mark.parametrize("kind", ["WordPiece", "Unigram", "WordLevel"])
def test_tokenizer_json_with_unsupported_model(tmp_path: Path, kind: str) -> None:
    from tokenizers import Tokenizer, models

    model = {
        "WordPiece": lambda: models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"),
        "Unigram": lambda: models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0, False),
        "WordLevel": lambda: models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"),
    }[kind]()
    path = tmp_path / "tokenizer.json"
    Tokenizer(model).save(str(path))
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_pretrained(tmp_path)
    assert_names(exc, path, kind)


def test_tokenizer_json_malformed_or_incomplete(gpt2_files, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, \n"merges": [}', "utf-8")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_pretrained(tmp_path)
    assert_names(exc, path, "2")
    util.hf_gpt2(*gpt2_files).save(str(path))
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["model"]["merges"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError) as exc:
        gh.Tokenizer.from_pretrained(tmp_path)
    assert_names(exc, path, "merges")


# --- missing files -----------------------------------------------------------------------------


def test_missing_files_raise_oserror_with_the_path(gpt2_files, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "vocab.json"
    cases = [
        lambda: gh.Tokenizer.from_files(missing, gpt2_files[1]),
        lambda: gh.Tokenizer.from_files(gpt2_files[0], missing),
        lambda: gh.Tokenizer.from_tiktoken(missing, pattern="cl100k_base"),
        lambda: gh.Tokenizer.from_pretrained(missing.parent),
    ]
    for case in cases:
        with pytest.raises(OSError) as exc:
            case()
        assert str(missing.parent) in str(exc.value), str(exc.value)
    # A directory that exists but holds no tokenizer files.
    with pytest.raises(OSError) as exc:
        gh.Tokenizer.from_pretrained(tmp_path)
    assert str(tmp_path) in str(exc.value)


# --- ids, tokens and argument types -------------------------------------------------------------


@pytest.fixture(scope="module")
def tok(gpt2_files):
    return gh.Tokenizer.from_files(*gpt2_files)


@pytest.mark.parametrize("bad_id", [50257, 60000, 2**31, 2**32 - 1])
def test_decode_unknown_id_raises_keyerror(tok, bad_id: int) -> None:
    with pytest.raises(KeyError, match=str(bad_id)):
        tok.decode([1, bad_id])
    with pytest.raises(KeyError, match=str(bad_id)):
        tok.decode_bytes([bad_id])
    with pytest.raises(KeyError, match=str(bad_id)):
        tok.decode_single_token_bytes(bad_id)


@pytest.mark.parametrize("bad_id", [-1, 2**32, 2**64])
def test_decode_id_out_of_any_range(tok, bad_id: int) -> None:
    # Not an id at all: KeyError like an unknown id, or OverflowError from the conversion.
    with pytest.raises((KeyError, OverflowError, ValueError)):
        tok.decode([bad_id])


def test_decode_gap_in_cl100k_ids(tmp_path: Path) -> None:
    # cl100k_base has no token 100261..100275 between its special tokens.
    path = util.tiktoken_file("cl100k_base", tmp_path)
    enc = gh.Tokenizer.from_tiktoken(path, pattern="cl100k_base")
    with pytest.raises(KeyError, match="100261"):
        enc.decode([100261])


def test_unknown_token_raises_keyerror(tok) -> None:
    with pytest.raises(KeyError):
        tok.encode_single_token(b"definitely not one token")
    with pytest.raises(KeyError):
        tok.encode_single_token("<|not special|>")


def test_disallowed_special_raises_valueerror(tok) -> None:
    with pytest.raises(ValueError, match=re.escape("<|endoftext|>")):
        tok.encode("text <|endoftext|> more")
    with pytest.raises(ValueError, match=re.escape("<|endoftext|>")):
        tok.encode_batch(["fine", "text <|endoftext|>"])


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.encode(b"bytes"),
        lambda t: t.encode(None),
        lambda t: t.encode(123),
        lambda t: t.encode_ordinary(b"bytes"),
        lambda t: t.encode_ordinary(["a list"]),
        lambda t: t.encode_batch(["fine", b"bytes"]),
        lambda t: t.encode_batch([None]),
        lambda t: t.encode_ordinary_batch(["fine", 3]),
        lambda t: t.encode_ordinary_batch(None),
        lambda t: t.decode("abc"),
        lambda t: t.decode([1, "2"]),
        lambda t: t.decode([1.5]),
        lambda t: t.decode(None),
        lambda t: t.decode_bytes([None]),
        lambda t: t.decode([1], errors=3),
        lambda t: t.decode_single_token_bytes("1"),
        lambda t: t.encode_single_token(5),
        lambda t: t.encode("x", allowed_special=5),
        lambda t: t.encode_batch(["x"], num_threads="2"),
    ],
)
def test_wrong_argument_type_raises_typeerror(tok, call) -> None:
    with pytest.raises(TypeError):
        call(tok)


def test_wrong_path_type_raises_typeerror(gpt2_files) -> None:
    with pytest.raises(TypeError):
        gh.Tokenizer.from_files(123, gpt2_files[1])
    with pytest.raises(TypeError):
        gh.Tokenizer.from_tiktoken(None, pattern="gpt2")
    with pytest.raises(TypeError):
        gh.Tokenizer.from_ranks({"not bytes": 0}, pattern="gpt2")


def test_bad_values_raise_valueerror(tok) -> None:
    with pytest.raises((ValueError, OverflowError)):
        tok.encode_batch(["x"], num_threads=-1)
    # Like bytes.decode: an unknown error handler is looked up (LookupError) once bytes fail.
    invalid = [tok.encode_single_token(b"\xff")]
    with pytest.raises(LookupError):
        b"\xff".decode("utf-8", "no-such-handler")
    with pytest.raises(LookupError):
        tok.decode(invalid, errors="no-such-handler")


# --- arbitrary bytes as each file format: an error or a tokenizer, never a crash ----------------

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids),
    max_leaves=12,
).map(json.dumps)
texts = st.text(max_size=200)
contents = st.binary(max_size=200) | json_ish.map(str.encode) | texts.map(str.encode)


@FUZZ
@given(vocab=contents, merges=contents)
def test_fuzzed_vocab_and_merges(tmp_path: Path, vocab: bytes, merges: bytes) -> None:
    (tmp_path / "vocab.json").write_bytes(vocab)
    (tmp_path / "merges.txt").write_bytes(merges)
    try:
        t = gh.Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    except ValueError:
        return
    # A vocabulary without every byte may have no tokens for this text: KeyError, no crash.
    with contextlib.suppress(KeyError, ValueError):
        t.decode_bytes(t.encode_ordinary("fuzz"))


@FUZZ
@given(content=contents, model=json_ish)
def test_fuzzed_tiktoken_and_tokenizer_json(tmp_path: Path, content: bytes, model: str) -> None:
    (tmp_path / "r.tiktoken").write_bytes(content)
    try:
        gh.Tokenizer.from_tiktoken(tmp_path / "r.tiktoken", pattern="gpt2")
    except ValueError:
        pass
    data = {"model": {"type": "BPE", "vocab": json.loads(model), "merges": json.loads(model)}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    try:
        gh.Tokenizer.from_pretrained(tmp_path)
    except ValueError:
        pass


# --- ids far beyond the vocabulary: an error, not an allocation of 2³² slots ---------------------

_HUGE_ID_SCRIPT = """
import resource, sys
import gpt_hybrid as gh
# 2 GiB of address space beyond what the imports (torch among them) already mapped: a table
# sized by the largest id (64 GiB here) fails instead of eating the machine, and the failure
# shows as a crash of this child, not of pytest.
with open("/proc/self/status") as status:
    vm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
limit = vm_kib * 1024 + (2 << 30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "tiktoken":
        gh.Tokenizer.from_tiktoken(path, pattern="gpt2")
    else:
        gh.Tokenizer.from_pretrained(path)
except ValueError as e:
    print("ValueError:", e)
"""


@pytest.mark.parametrize("kind", ["tiktoken", "tokenizer.json"])
def test_huge_id_is_an_error_not_a_crash(gpt2_files, tmp_path: Path, kind: str) -> None:
    import os
    import subprocess
    import sys

    huge = 2**32 - 2
    if kind == "tiktoken":
        path = write_tiktoken(tmp_path / "huge.tiktoken", [f"aGk= {huge}"])
    else:
        path = tmp_path / "tokenizer.json"
        util.hf_gpt2(*gpt2_files).save(str(path))
        data = json.loads(path.read_text(encoding="utf-8"))
        data["model"]["vocab"]["hi"] = huge  # leaves a hole where "hi" was: fine
        path.write_text(json.dumps(data), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _HUGE_ID_SCRIPT,
            kind,
            str(path if kind == "tiktoken" else tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, f"crashed (rc {run.returncode}): {run.stderr[:300]}"
    assert run.stdout.startswith("ValueError:") and str(huge) in run.stdout, run.stdout
    assert path.name in run.stdout, run.stdout
