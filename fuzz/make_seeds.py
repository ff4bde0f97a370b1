"""Writes the starting corpus of every fuzz target into fuzz/corpus/<target>/.

Run once before `cargo fuzz run` (see docs/reliability.md); the fuzzer grows the corpus from
these seeds. The inputs follow the layouts documented in rust/fuzz_checks/*.rs.
"""

import base64
import importlib.util
import json
import random
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BAD = ROOT.parent / "tests" / "data" / "bad"


def byte_table() -> list[str]:
    """GPT-2's bytes_to_unicode (the package's own), as a list indexed by byte.

    Loaded from its file rather than imported: importing ``gpt_hybrid`` needs the compiled
    extension, which fuzzing does not build.
    """
    path = ROOT.parent / "python" / "gpt_hybrid" / "tokenizer_files.py"
    spec = importlib.util.spec_from_file_location("_tokenizer_files", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.bytes_to_unicode()
    return [table[b] for b in range(256)]


T = byte_table()
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "a"), ("aa", "aa"), ("i", "n"), ("Ġ", "Ġ")]
TEXT = "Hello the world, it's 2024! héllo 世界 😀\n\n  aaaa the in"


def vocab(extra=()) -> dict[str, int]:
    v = {T[b]: b for b in range(256)}
    for left, right in MERGES:
        v[left + right] = len(v)
    for e in extra:
        v[e] = len(v)
    return v


def write(target: str, name: str, data: bytes) -> None:
    d = ROOT / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main() -> None:
    merges_txt = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES)
    v = json.dumps(vocab(["<|endoftext|>"]), ensure_ascii=False).encode()
    write("load_vocab_merges", "small", v + b"\0" + merges_txt.encode())
    for case in sorted(BAD.glob("vocab_*")):
        files = {p.name: p.read_bytes() for p in case.iterdir()} if case.is_dir() else {}
        if "vocab.json" in files:
            merges = files.get("merges.txt", b"")
            write("load_vocab_merges", case.name, files["vocab.json"] + b"\0" + merges)

    tok = {
        "added_tokens": [{"id": len(vocab()), "content": "<|endoftext|>", "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "model": {"type": "BPE", "vocab": vocab(), "merges": [f"{a} {b}" for a, b in MERGES]},
    }
    write("load_tokenizer_json", "small", json.dumps(tok, ensure_ascii=False).encode())
    tok["model"]["merges"] = [[a, b] for a, b in MERGES]
    tok["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\S+|\\s+"}, "behavior": "Isolated"},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
        ],
    }
    write("load_tokenizer_json", "split", json.dumps(tok, ensure_ascii=False).encode())
    for case in sorted(BAD.glob("tokjson_*")):
        write("load_tokenizer_json", case.name, (case / "tokenizer.json").read_bytes())

    ranks = [bytes([b]) for b in range(256)] + [b" t", b"he", b" the", b"aa", b"aaaa", b"in"]
    lines = b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(ranks))
    for mode in (0, 1, 2, 4, 8, 9):
        write("load_tiktoken", f"small_{mode}", bytes([mode]) + lines)
    for case in sorted(BAD.glob("tt_*")):
        write("load_tiktoken", case.name, b"\0" + case.read_bytes())

    texts = [TEXT, "<|endoftext|>x<|fim|>", "xxxxxxxxxxxxxxxxxxxxxxxxx", "a" * 100, "\r\n \t 12345"]
    for mode in range(8):
        for i, t in enumerate(texts):
            write("codec", f"m{mode}_{i}", bytes([mode]) + t.encode())

    rng = random.Random(0)
    for mode in range(8):
        recs = b"".join(struct.pack("<HB", rng.randrange(300), rng.randrange(4)) for _ in range(40))
        write("incremental_decoder", f"m{mode}", bytes([mode]) + recs)

    for i in range(16):
        write("sampler", f"r{i}", bytes(rng.randrange(256) for _ in range(200)))

    corpus = "the cat sat on the mat\nthe dog ate the hat\n<|endoftext|>aaaa bbbb aaaa 世界世界"
    for mode in range(8):
        head = bytes([mode]) + struct.pack("<H", 30 + 6 * mode) + bytes([mode % 3, 5])
        write("trainer", f"m{mode}", head + corpus.encode() + b"\0" + TEXT.encode())


if __name__ == "__main__":
    main()
