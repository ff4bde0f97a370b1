"""End-to-end tests of the ``gpt-hybrid`` command line, in a subprocess and in process.

The batch job is killed with SIGKILL partway and resumed; the output must answer every input
exactly once, with no partial line. Models are made in the test (a tiny random GPT-2 with
GPT-2's real tokenizer), except for the checks of the default model shipped in the package.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import gpt_hybrid as gh
import pytest
from _cli_util import make_tiny_model, popen_cli, read_jsonl, run_cli, write_prompts
from gpt_hybrid import batch as batch_mod
from gpt_hybrid.cli import default_model_dir, main

QUICK_FOX = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, gpt2_files) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), gpt2_files)


@pytest.fixture(scope="module")
def english_words(corpus_dir) -> set[str]:
    text = (corpus_dir / "english" / "austen_emma.txt").read_text(encoding="utf-8")
    text += (corpus_dir / "shakespeare" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    return set(re.findall(r"[a-z]+", text.lower()))


# ------------------------------------------------------------------ generate


def test_generate_default_model_prints_english(english_words):
    r = run_cli("generate", QUICK_FOX, "--max-new-tokens", "40", "--seed", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(QUICK_FOX)
    words = re.findall(r"[a-z]+", r.stdout[len(QUICK_FOX) :].lower())
    assert len(words) >= 10, r.stdout
    known = sum(w in english_words for w in words)
    # A model that learned English writes mostly real words; random weights would not.
    assert known / len(words) >= 0.8, (known, words)


def test_generate_matches_library_and_uses_generation_config():
    cfg = json.loads((default_model_dir() / "generation_config.json").read_text())
    shipped = {k: cfg[k] for k in ("temperature", "top_k", "top_p", "repetition_penalty")}
    args = ["generate", "Once upon a time", "--max-new-tokens", "12", "--seed", "7", "--no-echo"]
    flags = [f for k, v in shipped.items() for f in ("--" + k.replace("_", "-"), str(v))]
    a, b = run_cli(*args), run_cli(*args, *flags)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    llm = gh.Generator.default()
    expected = llm.generate("Once upon a time", max_new_tokens=12, seed=7, **shipped)
    assert a.stdout == expected[0].text + "\n"  # the file's settings are the defaults
    assert b.stdout == a.stdout
    c = run_cli(*args, "--temperature", "0")  # a flag overrides the file
    greedy = llm.generate("Once upon a time", max_new_tokens=12, **{**shipped, "temperature": 0.0})
    assert c.returncode == 0 and c.stdout == greedy[0].text + "\n"


def test_generate_stdin_stream_and_json(tiny_model):
    prompts = "Hello world\n\nThe sky is\n"
    greedy = ["--temperature", "0", "--max-new-tokens", "6", "--model", str(tiny_model)]
    r = run_cli("generate", "--json", *greedy, stdin=prompts)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["prompt"] for row in rows] == ["Hello world", "The sky is"]
    assert all(row["finish_reason"] in ("stop", "length") for row in rows)
    s = run_cli("generate", "--stream", *greedy, stdin=prompts)
    assert s.returncode == 0, s.stderr
    # Streaming prints exactly what the non-streaming path returns, prompt echoed.
    assert s.stdout == "".join(
        (("\n" if i else "") + row["prompt"] + row["text"] + "\n") for i, row in enumerate(rows)
    )
    n = run_cli("generate", "--json", "-n", "3", *greedy[2:], "--seed", "1", "Hi", "--top-k", "5")
    assert n.returncode == 0, n.stderr
    assert len(n.stdout.splitlines()) == 3


# ------------------------------------------------------------------ batch


def test_batch_killed_and_resumed_answers_each_id_once(tmp_path, tiny_model):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_prompts(inp, 50)
    cmd = [
        "batch",
        str(inp),
        "-o",
        str(out),
        "--model",
        str(tiny_model),
        "--max-new-tokens",
        "48",
        "--ignore-eos",
        "--temperature",
        "0",
        "--max-batch-size",
        "2",
    ]
    proc = popen_cli(*cmd)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be killed: " + proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = read_jsonl(out)
    assert 5 <= len(partial) < 50

    r = run_cli(*cmd)
    assert r.returncode == 0, r.stderr
    assert f"resuming: {len(partial)} of 50" in r.stderr
    rows = read_jsonl(out)
    assert sorted(row["id"] for row in rows) == ids  # every id, exactly once
    assert rows[: len(partial)] == partial  # what was written stays as it was
    for row in rows:
        assert row["finish_reason"] == ["length"]
        assert row["usage"]["completion_tokens"] == 48
        assert row["usage"]["total_tokens"] == row["usage"]["prompt_tokens"] + 48

    # Greedy completions do not depend on the kill: an uninterrupted run gives the same rows.
    fresh = tmp_path / "fresh.jsonl"
    r2 = run_cli(*cmd[:3], str(fresh), *cmd[4:], "--no-progress")
    assert r2.returncode == 0, r2.stderr
    by_id = {row["id"]: row for row in read_jsonl(fresh)}
    assert {row["id"]: row for row in rows} == by_id


def test_batch_partial_last_line_and_rerun_is_a_no_op(tmp_path, tiny_model):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_prompts(inp, 6, max_new_tokens=3)
    cmd = ["batch", str(inp), "-o", str(out), "--model", str(tiny_model)]
    assert run_cli(*cmd).returncode == 0
    full = read_jsonl(out)
    # Simulate a crash mid-write: two whole lines, then half of the third.
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2], encoding="utf-8")
    r = run_cli(*cmd)
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert sorted(row["id"] for row in rows) == sorted(row["id"] for row in full)
    assert "resuming: 2 of 6" in r.stderr
    again = run_cli(*cmd)
    assert again.returncode == 0 and read_jsonl(out) == rows
    assert "resuming: 6 of 6" in again.stderr


def test_batch_malformed_lines_become_error_rows(tmp_path, tiny_model):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = {"prompt": "Hello", "max_new_tokens": 2}
    lines = [
        json.dumps({"id": "a", **good}),
        '{"id": "b", "prompt": "unterminated',  # line 2: not JSON
        json.dumps({"id": "c", "max_new_tokens": 2}),  # line 3: no prompt
        json.dumps({"id": "d", **good, "temperature": -1}),  # line 4: bad sampling value
        json.dumps({"id": "a", **good}),  # line 5: duplicate id
        "",  # blank: not an input
        json.dumps({"id": "e", "prompt": "word " * 80, "max_new_tokens": 2}),  # line 7: too long
        json.dumps({"id": "f", **good, "top_k": 3, "seed": 1}),
    ]
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = ["batch", str(inp), "-o", str(out), "--model", str(tiny_model), "--no-progress"]
    r = run_cli(*cmd)
    assert r.returncode == 3, r.stderr  # finished, with error rows
    assert "Traceback" not in r.stderr
    for n in (2, 3, 4, 5, 7):
        assert f"line {n}:" in r.stderr
    rows = read_jsonl(out)
    errors = {row["line"]: row for row in rows if "error" in row}
    assert sorted(errors) == [2, 3, 4, 5, 7]
    assert "JSON" in errors[2]["error"] and "prompt" in errors[3]["error"]
    assert "temperature" in errors[4]["error"] and "duplicate" in errors[5]["error"]
    assert "context window" in errors[7]["error"] and errors[7]["id"] == "e"
    assert sorted(row["id"] for row in rows if "error" not in row) == ["a", "f"]
    # Rerun: nothing is answered twice, error rows included.
    r2 = run_cli(*cmd)
    assert r2.returncode == 3 and read_jsonl(out) == rows


def test_batch_progress_bar_reports_rates(tmp_path, tiny_model):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_prompts(inp, 4, max_new_tokens=5, ignore_eos=True)
    r = run_cli("batch", str(inp), "-o", str(out), "--model", str(tiny_model))
    assert r.returncode == 0, r.stderr
    last = [ln for ln in r.stderr.splitlines() if "items/s" in ln][-1]
    assert re.search(r"4/4 \[#+\] 100%\s+[\d.]+ items/s\s+\d+ tok/s", last), last


# ------------------------------------------------------------------ tokenize, count, info


def test_tokenize_and_count_agree_with_tiktoken(tmp_path, gpt2_files, corpus_dir, capsys):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    encoder, bpe = gpt2_files
    ranks = data_gym_to_mergeable_bpe_ranks(str(bpe), str(encoder))
    enc = tiktoken.Encoding(
        "gpt2-files",
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )
    tokdir = tmp_path / "tok"
    tokdir.mkdir()
    (tokdir / "vocab.json").write_bytes(encoder.read_bytes())
    (tokdir / "merges.txt").write_bytes(bpe.read_bytes())
    text = "Hello world, it's 2024!  Ünïcödé 🙂"
    assert main(["tokenize", "--tokenizer", str(tokdir), text]) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in enc.encode_ordinary(text)]
    files = [
        corpus_dir / "english" / "carroll_alice_in_wonderland.txt",
        corpus_dir / "shakespeare" / "tinyshakespeare.txt",
    ]
    argv = ["count", "--tokenizer", str(tokdir)] + [a for f in files for a in ("-f", str(f))]
    assert main(argv) == 0
    counts = [len(enc.encode_ordinary(f.read_text(encoding="utf-8"))) for f in files]
    assert capsys.readouterr().out.split() == [
        str(counts[0]),
        str(files[0]),
        str(counts[1]),
        str(files[1]),
        str(sum(counts)),
        "total",
    ]


def test_count_default_tokenizer_and_stdin():
    tok = gh.Tokenizer.from_pretrained(default_model_dir())
    text = "It is a truth universally acknowledged."
    r = run_cli("count", stdin=text)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{len(tok.encode_ordinary(text))}\n"
    t = run_cli("tokenize", "--json", "--tokens", text)
    pieces = json.loads(t.stdout)
    assert "".join(pieces) == text and len(pieces) == len(tok.encode_ordinary(text))


def test_info_reports_version_model_device_threads(tiny_model):
    r = run_cli("info", "--json", "--model", str(tiny_model))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["versions"]["gpt-hybrid"] == gh.__version__
    assert info["model"]["n_layer"] == 2 and info["model"]["vocab_size"] == 50257
    assert info["model"]["parameters"] == gh.GPT2.from_pretrained(tiny_model).num_parameters()
    assert info["device"]["selected"] == "cpu"
    assert info["threads"]["torch_intra_op"] == 1  # OMP_NUM_THREADS=1 in the test env
    plain = run_cli("info")
    assert plain.returncode == 0 and "model.path" in plain.stdout


# ------------------------------------------------------------------ errors and exit codes


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["generate", "hi", "--model", "/nonexistent/model"], 1, "/nonexistent/model"),
        (["batch", "/nonexistent/in.jsonl", "-o", "out.jsonl"], 1, "no such file"),
        (["generate", "hi", "--temperature", "-2"], 1, "temperature"),
        (["generate", "hi", "--top-k", "many"], 2, "invalid int value"),
        (["count", "-f", "/nonexistent/file.txt"], 1, "/nonexistent/file.txt"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_user_errors_exit_codes_without_traceback(args, code, message):
    r = run_cli(*args, stdin="")
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_generate_without_prompt_is_an_error_in_process(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["generate"]) == 1
    assert "no prompt" in capsys.readouterr().err


# ------------------------------------------------------------------ units of the batch job


def test_scan_output_refuses_a_foreign_file(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_text('{"id": 1, "completions": []}\nnot json at all\n{"id": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        batch_mod.scan_output(p)


def test_parse_line_per_row_fields_override_defaults():
    req = batch_mod.parse_line(
        4, '{"id": 9, "prompt": [1, 2], "top_p": 0.5}', {"top_p": 0.9, "seed": 3}
    )
    assert (req.line, req.id, req.prompt) == (4, 9, [1, 2])
    assert (req.params.top_p, req.params.seed) == (0.5, 3)
    for bad, why in [
        ('{"id": true, "prompt": "x"}', "id"),
        ('{"id": 1, "prompt": ""}', "prompt"),
        ("[1, 2]", "JSON object"),
        ('{"id": 1, "prompt": [1, "a"]}', "prompt"),
    ]:
        with pytest.raises(ValueError, match=why):
            batch_mod.parse_line(1, bad, {})


def test_progress_line_counts_items_and_tokens():
    import io

    buf = io.StringIO()
    bar = batch_mod.Progress(10, 4, stream=buf)
    bar.t0 -= 2.0  # pretend two seconds went by
    bar.update(2, tokens=100)
    line = bar.line()
    assert line.startswith("6/10 [############........]  60%")
    assert re.search(r"\b1\.0\d items/s\s+(49|50) tok/s", line), line


# ------------------------------------------------------------------ REPL: reprs and help


def test_reprs_and_help_explain_the_objects():
    import pydoc

    llm = gh.Generator.default()
    r = repr(llm)
    assert "Generator(" in r and "vocab=" in r and "device=cpu" in r and "params=" in r
    assert f"n_vocab={llm.tokenizer.n_vocab}" in repr(llm.tokenizer)
    assert "temperature=" in repr(gh.SamplingParams())
    assert "text=" in repr(llm.generate("Hi", max_new_tokens=2, seed=0)[0])
    doc = pydoc.render_doc(gh.Generator.generate, renderer=pydoc.plaintext)
    assert ">>>" in doc and "max_new_tokens" in doc
    assert ">>>" in (main.__doc__ or "") and ">>>" in (batch_mod.run_batch.__doc__ or "")


# ------------------------------------------------------------------ the training script


def test_train_script_is_reproducible_from_its_seed(tmp_path, corpus_dir):
    import subprocess
    import sys

    from _cli_util import cli_env

    script = Path(__file__).resolve().parent.parent / "scripts" / "train_default_model.py"
    tiny = [
        "--max-chars",
        "20000",
        "--vocab-size",
        "300",
        "--n-layer",
        "1",
        "--n-head",
        "2",
        "--n-embd",
        "32",
        "--n-ctx",
        "32",
        "--batch-size",
        "4",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--eval-batches",
        "2",
        "--warmup",
        "2",
        "--threads",
        "1",
        "--corpus",
        str(corpus_dir),
    ]
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        r = subprocess.run(
            [sys.executable, str(script), *tiny, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            env=cli_env(),
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"step +6 \| train loss [\d.]+ \| val loss [\d.]+", r.stdout), r.stdout
        outs.append(out)
    a, b = outs
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "merges.txt").read_text() == (b / "merges.txt").read_text()
    meta = json.loads((a / "training.json").read_text())
    assert meta["bpe_trainer"] == "ours" and meta["steps_done"] == 6
    # The result loads as a model and a tokenizer of the sizes asked for.
    llm = gh.Generator.from_pretrained(a)
    assert llm.tokenizer.n_vocab == 300 and llm.model.config.n_layer == 1
