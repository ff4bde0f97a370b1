"""The malformed-input corpus (tests/data/bad/, made by scripts/make_bad_inputs.py).

Each case in cases.json is loaded in-process under a timeout guard: it must raise the expected
exception type (never a pyo3 ``PanicException``, which is a ``BaseException``), with a message
naming the problem, and return nothing. Cases marked ``"expect": "ok"`` are accepted on purpose
(the entry's ``why`` says so) and must give the same ids as their clean counterpart.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import gpt_hybrid as gh
import pytest

BAD = Path(__file__).parent / "data" / "bad"
CASES = json.loads((BAD / "cases.json").read_text(encoding="utf-8"))
LOADERS = {
    "gh.GPT2.from_pretrained": lambda p: gh.GPT2.from_pretrained(p),
    "gh.Generator.from_pretrained": lambda p: gh.Generator.from_pretrained(p),
    "gh.Tokenizer.from_files": lambda p: gh.Tokenizer.from_files(
        p / "vocab.json", p / "merges.txt"
    ),
    "gh.Tokenizer.from_pretrained": lambda p: gh.Tokenizer.from_pretrained(p),
    "gh.Tokenizer.from_tiktoken": lambda p: gh.Tokenizer.from_tiktoken(
        p, pattern="gpt2", special_tokens={}
    ),
}
TEXT = "hello world, hell\r\nhello\tworld éé 😀"
TIMEOUT_S = 20


def load(case: dict):
    """Calls the case's loader, raising TimeoutError if it runs past TIMEOUT_S."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"{case['name']}: loader still running after {TIMEOUT_S} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIMEOUT_S)
    try:
        return LOADERS[case["loader"]](BAD / case["name"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_corpus_size_and_files() -> None:
    assert len(CASES) >= 25
    assert len({c["name"] for c in CASES}) == len(CASES)
    for c in CASES:
        assert (BAD / c["name"]).exists(), c["name"]
        assert c["loader"] in LOADERS, c["loader"]
        assert c["expect"] == "ok" or c["match"], c["name"]


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] != "ok"], ids=lambda c: c["name"])
def test_bad_input_raises_naming_the_problem(case: dict) -> None:
    expected = {"ValueError": ValueError, "OSError": OSError}[case["expect"]]
    result = None
    with pytest.raises(expected) as exc:
        result = load(case)
    assert result is None  # nothing partial escaped
    assert case["match"] in str(exc.value), f"{case['name']}: {exc.value!s}"


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] == "ok"], ids=lambda c: c["name"])
def test_accepted_input_is_loaded_correctly(case: dict) -> None:
    assert case.get("why"), case["name"]
    tok = load(case)
    ids = tok.encode_ordinary(TEXT)
    assert tok.decode(ids) == TEXT
    if "same_as" in case:
        clean = load(next(c for c in CASES if c["name"] == case["same_as"]))
        assert ids == clean.encode_ordinary(TEXT)
        assert tok.n_vocab == clean.n_vocab
