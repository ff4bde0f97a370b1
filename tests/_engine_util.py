"""Helpers for the model/loading/engine tests: tiny HF checkpoints and a reference generate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch


def make_hf_checkpoint(
    directory: Path,
    seed: int = 0,
    logit_scale: float = 20.0,
    tokenizer_files: tuple[Path, Path] | None = None,
    **config_kwargs,
) -> Path:
    """Saves a randomly initialised HF ``GPT2LMHeadModel`` (safetensors) and returns the dir.

    ``tokenizer_files`` (GPT-2's encoder.json and vocab.bpe, the ``gpt2_files`` fixture) are
    copied beside it as vocab.json and merges.txt, so that it loads as a ``Generator``.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    defaults = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=300, n_positions=128)
    defaults.update(config_kwargs)
    model = GPT2LMHeadModel(GPT2Config(**defaults)).eval()
    # Random init gives near-uniform logits; scale the output embeddings so that greedy
    # choices are well separated and comparisons are meaningful.
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    model.save_pretrained(directory, safe_serialization=True)
    if tokenizer_files is not None:
        encoder, bpe = tokenizer_files
        shutil.copy(encoder, Path(directory) / "vocab.json")
        shutil.copy(bpe, Path(directory) / "merges.txt")
    return Path(directory)


def load_hf(directory: Path):
    """The HF peer, eval mode, fp32, eager attention off (SDPA, as users get by default)."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(directory).eval()


@torch.no_grad()
def reference_generate(model, prompt: list[int], max_new_tokens: int, eos: int | None = None):
    """Slow, obviously correct greedy generate: no cache, one row at a time, full forward."""
    ids = list(prompt)
    out = []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids]))[0, -1]
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        ids.append(nxt)
        if eos is not None and nxt == eos:
            break
    return out


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Runs a test module's torch ops on one thread, then restores the setting.

    On a machine with more busy processes than cores, a multi-threaded GEMM stalls at every
    OpenMP barrier whenever one of its threads is descheduled (measured: a 4x64 @ 64x192 matmul
    takes 12 ms on 2 threads and 4 us on 1 here). Results do not depend on it otherwise.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_hub_cache(cache: Path, repo_id: str, src: Path) -> Path:
    """The layout huggingface_hub writes: refs/main -> snapshots/<commit>/files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in src.iterdir():
        shutil.copy(f, snap / f.name)
    return snap
