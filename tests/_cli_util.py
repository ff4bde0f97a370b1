"""Helpers for tests/test_cli.py: a tiny model made in the test, and running the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gpt_hybrid

# Run the CLI from the same package the tests import (an installed wheel or python/ in a dev
# checkout), with one torch thread so parallel test runs do not fight over the cores.
PKG_PARENT = str(Path(gpt_hybrid.__file__).resolve().parent.parent)


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("GPT_HYBRID_DEBUG", None)
    env.update(extra)
    return env


def run_cli(*args: str, stdin: str | None = None, timeout: float = 300, **env: str):
    """``python -m gpt_hybrid ARGS`` in a subprocess; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "gpt_hybrid", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
    )


def popen_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gpt_hybrid", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        **kwargs,
    )


def make_tiny_model(directory: Path, gpt2_files: tuple[Path, Path], n_positions: int = 64) -> Path:
    """A 2-layer GPT-2 with random weights and GPT-2's real tokenizer, saved the HF way."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_positions=n_positions, n_embd=32, n_layer=2, n_head=2)
    GPT2LMHeadModel(cfg).save_pretrained(directory, safe_serialization=True)
    encoder, bpe = gpt2_files
    shutil.copy(encoder, directory / "vocab.json")
    shutil.copy(bpe, directory / "merges.txt")
    return directory


def read_jsonl(path: Path) -> list[dict]:
    """Every line of ``path`` as JSON; fails on a partial or malformed line."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "output ends in a partial line"
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def write_prompts(path: Path, n: int, **fields) -> list[int]:
    """``n`` input rows with ids 0..n-1 and varied prompts."""
    subjects = ["The king", "A ship", "My friend", "The old house", "Rain", "She", "The city"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            row = {"id": i, "prompt": f"{subjects[i % len(subjects)]} number {i} was", **fields}
            f.write(json.dumps(row) + "\n")
    return list(range(n))
