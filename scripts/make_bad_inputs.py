"""Writes tests/data/bad/: small malformed checkpoints and vocabularies, plus cases.json.

Run from the repository root: ``PYTHONPATH=python python scripts/make_bad_inputs.py``. The output
is deterministic (seeded weights), so re-running it leaves the committed files unchanged.
Each case names the loader to call, the expected exception type and a substring of its message
(``"expect": "ok"`` marks input we accept on purpose; ``same_as`` names the clean case whose
encodings it must reproduce, and ``why`` says why it is accepted).
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
from pathlib import Path

import torch
from gpt_hybrid.model import GPT2, GPT2Config
from safetensors.torch import save

OUT = Path("tests/data/bad")
CONFIG = {
    "model_type": "gpt2",
    "vocab_size": 16,
    "n_positions": 16,
    "n_embd": 8,
    "n_layer": 1,
    "n_head": 2,
}
cases: list[dict] = []
shutil.rmtree(OUT, ignore_errors=True)


def case(name: str, loader: str, expect: str, match: str = "", **extra) -> None:
    cases.append({"name": name, "loader": loader, "expect": expect, "match": match, **extra})


def clean_tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = GPT2(GPT2Config.from_dict(CONFIG))
    return {k: v.contiguous().clone() for k, v in model.hf_state_dict().items()}


def split(blob: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join(header: dict, data: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def ckpt(name: str, weights: bytes | dict, config: dict | str | None = None) -> Path:
    d = OUT / name
    d.mkdir(parents=True)
    cfg = CONFIG if config is None else config
    (d / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    blob = weights if isinstance(weights, bytes) else save(weights, metadata={"format": "pt"})
    (d / "model.safetensors").write_bytes(blob)
    return d


# --- checkpoints -------------------------------------------------------------------------------
T = clean_tensors()
GOOD = save(T, metadata={"format": "pt"})
HDR, DATA = split(GOOD)
GP = "gh.GPT2.from_pretrained"

ckpt("st_truncated", GOOD[: len(GOOD) // 2])
case("st_truncated", GP, "ValueError", "model.safetensors")
ckpt("st_truncated_in_header", GOOD[:20])
case("st_truncated_in_header", GP, "ValueError", "model.safetensors")
ckpt("st_header_len_too_big", struct.pack("<Q", len(GOOD) * 10) + GOOD[8:])
case("st_header_len_too_big", GP, "ValueError", "header length")
ckpt("st_header_len_huge", struct.pack("<Q", 2**63) + GOOD[8:])
case("st_header_len_huge", GP, "ValueError", "header too large")
n = struct.unpack("<Q", GOOD[:8])[0]
ckpt("st_header_not_json", GOOD[:8] + b"{not json".ljust(n, b" ") + DATA)
case("st_header_not_json", GP, "ValueError", "invalid JSON in header")
ckpt("st_header_not_utf8", GOOD[:8] + b"\xff\xfe".ljust(n, b" ") + DATA)
case("st_header_not_utf8", GP, "ValueError", "UTF-8")

h = json.loads(json.dumps(HDR))
keys = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
a, b = keys[0], keys[1]
h[b]["data_offsets"] = [
    h[a]["data_offsets"][0],
    h[a]["data_offsets"][0] + (h[b]["data_offsets"][1] - h[b]["data_offsets"][0]),
]
ckpt("st_overlapping_offsets", join(h, DATA))
case("st_overlapping_offsets", GP, "ValueError", "offset")

h = json.loads(json.dumps(HDR))
last = keys[-1]
size = h[last]["data_offsets"][1] - h[last]["data_offsets"][0]
h[last]["data_offsets"] = [len(DATA), len(DATA) + size]
ckpt("st_offsets_out_of_bounds", join(h, DATA))
case("st_offsets_out_of_bounds", GP, "ValueError", "offset")

h = json.loads(json.dumps(HDR))
h[last]["shape"] = [s * 4 for s in h[last]["shape"]]  # shape disagrees with its byte range
ckpt("st_shape_vs_offsets", join(h, DATA))
case("st_shape_vs_offsets", GP, "ValueError", "shape")

h = json.loads(json.dumps(HDR))
h[keys[0]]["dtype"] = "Q4_K"  # not a dtype safetensors knows
ckpt("st_unknown_dtype", join(h, DATA))
case("st_unknown_dtype", GP, "ValueError", "Q4_K")

ckpt("st_int_dtype", T | {"transformer.wte.weight": T["transformer.wte.weight"].to(torch.int32)})
case("st_int_dtype", GP, "ValueError", "I32")

ckpt("st_missing_tensor", {k: v for k, v in T.items() if k != "transformer.ln_f.weight"})
case("st_missing_tensor", GP, "ValueError", "transformer.ln_f.weight")
ckpt("st_extra_tensor", T | {"transformer.h.0.mystery.weight": torch.zeros(2)})
case("st_extra_tensor", GP, "ValueError", "transformer.h.0.mystery.weight")
ckpt("st_wrong_shape", T | {"transformer.wpe.weight": torch.zeros(17, 8)})
case("st_wrong_shape", GP, "ValueError", "transformer.wpe.weight")
ckpt("st_empty_file", b"")
case("st_empty_file", GP, "ValueError", "header too small")

# --- config.json -------------------------------------------------------------------------------
ckpt("cfg_not_json", T, '{"model_type": "gpt2", n_embd: 8}')
case("cfg_not_json", GP, "ValueError", "config.json")
ckpt("cfg_not_object", T, "[1, 2, 3]")
case("cfg_not_object", GP, "ValueError", "config.json")
ckpt("cfg_missing_model_type", T, {k: v for k, v in CONFIG.items() if k != "model_type"})
case("cfg_missing_model_type", GP, "ValueError", "model_type")
ckpt("cfg_n_embd_not_divisible", T, CONFIG | {"n_head": 3})
case("cfg_n_embd_not_divisible", GP, "ValueError", "n_head")
ckpt("cfg_negative_n_layer", T, CONFIG | {"n_layer": -1})
case("cfg_negative_n_layer", GP, "ValueError", "n_layer")
ckpt("cfg_negative_vocab_size", T, CONFIG | {"vocab_size": -16})
case("cfg_negative_vocab_size", GP, "ValueError", "vocab_size")
ckpt("cfg_string_n_embd", T, CONFIG | {"n_embd": "8"})
case("cfg_string_n_embd", GP, "ValueError", "n_embd")
ckpt("cfg_unknown_activation", T, CONFIG | {"activation_function": "swish_plus"})
case("cfg_unknown_activation", GP, "ValueError", "swish_plus")
# The same through Generator (it loads the model before the tokenizer).
d = ckpt("gen_cfg_unknown_activation", T, CONFIG | {"activation_function": "swish_plus"})
case("gen_cfg_unknown_activation", "gh.Generator.from_pretrained", "ValueError", "swish_plus")
ckpt("gen_st_truncated", GOOD[:100])
case("gen_st_truncated", "gh.Generator.from_pretrained", "ValueError", "model.safetensors")


# --- vocab.json + merges.txt -------------------------------------------------------------------
def byte_chars() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, extra = list(bs), 0
    for c in range(256):
        if c not in bs:
            bs.append(c)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for _, c in sorted(zip(bs, cs, strict=True))]


BYTES = byte_chars()
MERGES = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w")]
VOCAB = {c: i for i, c in enumerate(BYTES)}
for x, y in MERGES:
    VOCAB[x + y] = len(VOCAB)
VOCAB["<|endoftext|>"] = len(VOCAB)
VOCAB_TEXT = json.dumps(VOCAB, ensure_ascii=False)
MERGES_TEXT = "#version: 0.2\n" + "".join(f"{x} {y}\n" for x, y in MERGES)
FF = "gh.Tokenizer.from_files"


def vocab(name: str, v: str | bytes = VOCAB_TEXT, m: str | bytes = MERGES_TEXT) -> None:
    d = OUT / name
    d.mkdir(parents=True)
    for f, content in (("vocab.json", v), ("merges.txt", m)):
        (d / f).write_bytes(content if isinstance(content, bytes) else content.encode())


vocab("vocab_clean")
case("vocab_clean", FF, "ok", why="the reference the accepted variants must match")
vocab("vocab_merge_symbol_missing", m=MERGES_TEXT + "hello zq\n")
case("vocab_merge_symbol_missing", FF, "ValueError", "zq")
vocab("vocab_merge_result_missing", v=json.dumps({k: i for k, i in VOCAB.items() if k != "ll"}))
case("vocab_merge_result_missing", FF, "ValueError", "ll")
vocab("vocab_duplicate_ids", v=json.dumps(VOCAB | {"hello": VOCAB["hell"]}))
case("vocab_duplicate_ids", FF, "ValueError", "duplicate id")
vocab("vocab_huge_id", v=json.dumps(VOCAB | {"<|endoftext|>": 2**40}))
case("vocab_huge_id", FF, "ValueError", str(2**40))
vocab("vocab_negative_id", v=json.dumps(VOCAB | {"<|endoftext|>": -5}))
case("vocab_negative_id", FF, "ValueError", "vocab.json")
vocab("vocab_empty_vocab", v="")
case("vocab_empty_vocab", FF, "ValueError", "vocab.json")
vocab("vocab_empty_object", v="{}", m="")
case("vocab_empty_object", FF, "ValueError", "single byte 0x00")
vocab("vocab_empty_merges", m="")
case("vocab_empty_merges", FF, "ok", why="no merges is a valid (byte-level) BPE; ids differ")
vocab("vocab_bom_vocab", v="\ufeff" + VOCAB_TEXT)
case(
    "vocab_bom_vocab",
    FF,
    "ValueError",
    "vocab.json",
    why="refused like HF tokenizers/serde_json: JSON has no BOM",
)
vocab("vocab_bom_merges", m="\ufeff" + MERGES_TEXT)
case(
    "vocab_bom_merges",
    FF,
    "ValueError",
    "merges.txt",
    why="refused: the BOM glues onto the first symbol, named in the message",
)
vocab("vocab_crlf_merges", m=MERGES_TEXT.replace("\n", "\r\n"))
case("vocab_crlf_merges", FF, "ok", same_as="vocab_clean", why="CRLF is a line ending")
vocab("vocab_crlf_vocab", v=json.dumps(VOCAB, indent=1).replace("\n", "\r\n"))
case("vocab_crlf_vocab", FF, "ok", same_as="vocab_clean", why="JSON whitespace")
vocab("vocab_merges_not_utf8", m=MERGES_TEXT.encode() + b"\xff \xfe\n")
case("vocab_merges_not_utf8", FF, "ValueError", "merges.txt")

# --- tokenizer.json ----------------------------------------------------------------------------
FP = "gh.Tokenizer.from_pretrained"
for kind, model in (
    ("WordPiece", {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1}}),
    ("Unigram", {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}),
):
    d = OUT / f"tokjson_{kind.lower()}"
    d.mkdir(parents=True)
    (d / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": model}))
    case(d.name, FP, "ValueError", kind)
d = OUT / "tokjson_not_json"
d.mkdir(parents=True)
(d / "tokenizer.json").write_text('{"model": {"type": "BPE",')
case(d.name, FP, "ValueError", "tokenizer.json")

# --- .tiktoken ---------------------------------------------------------------------------------
TT = "gh.Tokenizer.from_tiktoken"
TOKS = [bytes([i]) for i in range(256)] + [b"he", b"ll", b"hell", b"hello", b" w"]
TT_LINES = [f"{base64.b64encode(t).decode()} {r}" for r, t in enumerate(TOKS)]
TT_TEXT = "\n".join(TT_LINES) + "\n"


def tiktoken(name: str, content: str | bytes) -> None:
    path = OUT / f"{name}.tiktoken"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


tiktoken("tt_clean", TT_TEXT)
case("tt_clean.tiktoken", TT, "ok", why="the reference the accepted variants must match")
tiktoken("tt_huge_rank", TT_TEXT + f"aGk= {2**40}\n")
case("tt_huge_rank.tiktoken", TT, "ValueError", "line 262")
tiktoken("tt_duplicate_rank", TT_TEXT + "aGk= 3\n")
case("tt_duplicate_rank.tiktoken", TT, "ValueError", "rank 3 already")
tiktoken("tt_empty", "")
case("tt_empty.tiktoken", TT, "ValueError", "single byte 0x00")
tiktoken("tt_bom", "\ufeff" + TT_TEXT)
case(
    "tt_bom.tiktoken",
    TT,
    "ValueError",
    "tt_bom.tiktoken",
    why="refused like tiktoken: line 1 is not base64",
)
tiktoken("tt_crlf", TT_TEXT.replace("\n", "\r\n"))
case("tt_crlf.tiktoken", TT, "ok", same_as="tt_clean.tiktoken", why="CRLF is a line ending")


(OUT / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
print(f"{len(cases)} cases in {OUT}")
