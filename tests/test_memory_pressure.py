"""Memory pressure: a batch whose KV cache would not fit shrinks with a warning, or fails
before anything is allocated; and the available-memory probes read cgroups and meminfo right.

No real out-of-memory condition is made: ``gpt_hybrid.memory.available_bytes`` is replaced by
a function returning a chosen number of bytes, and the cgroup probe reads a fake cgroup tree.
"""

from __future__ import annotations

import warnings

import gpt_hybrid as gh
import gpt_hybrid.engine as engine_module
import pytest
import torch
from _engine_util import (
    make_hf_checkpoint,
    one_torch_thread,  # noqa: F401  (an autouse fixture)
)
from gpt_hybrid import memory
from gpt_hybrid.engine import Engine
from gpt_hybrid.memory import CacheMemoryError, CacheShrinkWarning, RunMemory
from gpt_hybrid.model import GPT2
from gpt_hybrid.sampling_params import SamplingParams

PROMPTS = [[(7 * i + j) % 256 for j in range(3 + i % 5)] for i in range(8)]
PARAMS = SamplingParams(max_new_tokens=12, temperature=0.8, top_k=20, seed=5, ignore_eos=True)
MAX_LEN = max(len(p) for p in PROMPTS) + PARAMS.max_new_tokens


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> GPT2:
    return GPT2.from_pretrained(make_hf_checkpoint(tmp_path_factory.mktemp("mem"), seed=1))


@pytest.fixture(scope="module")
def tok() -> gh.Tokenizer:
    return gh.Tokenizer.from_ranks({bytes([b]): b for b in range(256)})


@pytest.fixture
def caches(monkeypatch) -> list[engine_module.KVCache]:
    """Every KV cache the engine makes during the test."""
    made: list[engine_module.KVCache] = []

    class Spy(engine_module.KVCache):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(engine_module, "KVCache", Spy)
    return made


def need(model: GPT2) -> RunMemory:
    return RunMemory.estimate(model.config, MAX_LEN, torch.float32, max(map(len, PROMPTS)))


def limit(monkeypatch, available: int) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: available)


def room_for(model: GPT2, rows: int) -> int:
    """Available bytes that hold exactly ``rows`` cache rows at the default utilization."""
    return int(need(model).total(rows) / 0.9) + 16


def texts(out) -> list[list[int]]:
    return [c.token_ids for row in out for c in row]


def test_batch_shrinks_with_a_warning_and_gives_the_same_tokens(model, tok, monkeypatch, caches):
    """8 sequences, memory for 5 rows: 5 slots, a warning that says so, identical output.

    Batch-invariant mode makes each row's tokens independent of the batch, so the shrunk run
    must equal the unconstrained one token for token.
    """
    full = Engine(model, tok, max_batch_size=8, batch_invariant=True).generate(PROMPTS, PARAMS)
    assert [c.k.shape[1] for c in caches] == [8]
    limit(monkeypatch, room_for(model, 5))
    engine = Engine(model, tok, max_batch_size=8, batch_invariant=True)
    with pytest.warns(CacheShrinkWarning, match="running with 5 slots instead of 8") as rec:
        small = engine.generate(PROMPTS, PARAMS)
    msg = str(rec[0].message)
    assert "MiB" in msg and "available" in msg and "strict_memory=True" in msg
    assert caches[-1].k.shape[1] == 5
    assert texts(small) == texts(full)
    assert all(len(c.token_ids) == PARAMS.max_new_tokens for row in small for c in row)


def test_strict_memory_raises_before_allocating(model, tok, monkeypatch, caches):
    limit(monkeypatch, room_for(model, 3))
    engine = Engine(model, tok, max_batch_size=8, strict_memory=True)
    with pytest.raises(CacheMemoryError, match="max_batch_size=3 or less") as exc:
        engine.generate(PROMPTS, PARAMS)
    assert isinstance(exc.value, MemoryError)
    assert "needs" in str(exc.value) and "available" in str(exc.value)
    assert caches == []  # nothing was allocated, nothing prefilled
    # The advice is right: with 3 slots it runs, and without a warning.
    engine = Engine(model, tok, max_batch_size=3, strict_memory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(texts(engine.generate(PROMPTS, PARAMS))) == 8


def test_not_even_one_row_fits_is_an_error_even_when_shrinking_is_allowed(
    model, tok, monkeypatch, caches
):
    limit(monkeypatch, need(model).total(1) // 2)
    with pytest.raises(CacheMemoryError, match="not even 1 row"):
        Engine(model, tok, max_batch_size=8).generate(PROMPTS, PARAMS)
    assert caches == []


def test_batch_invariant_needs_its_minimum_rows(model, tok, monkeypatch, caches):
    """Batch-invariant decode needs 4 rows; memory for 3 is an error, not a silent change."""
    limit(monkeypatch, room_for(model, 3))
    with pytest.raises(CacheMemoryError, match="not even 4 row"):
        Engine(model, tok, max_batch_size=8, batch_invariant=True).generate(PROMPTS, PARAMS)
    assert caches == []


def test_enough_memory_means_no_warning_and_full_slots(model, tok, monkeypatch, caches):
    limit(monkeypatch, room_for(model, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Engine(model, tok, max_batch_size=8).generate(PROMPTS, PARAMS)
    assert caches[-1].k.shape[1] == 8


def test_unknown_available_memory_skips_the_check(model, tok, monkeypatch, caches):
    limit(monkeypatch, None)
    Engine(model, tok, max_batch_size=8, strict_memory=True).generate(PROMPTS, PARAMS)
    assert caches[-1].k.shape[1] == 8


def test_estimate_counts_the_cache_exactly(model, tok, caches):
    """The estimate's cache part is the allocated cache's size, byte for byte."""
    Engine(model, tok, max_batch_size=8).generate(PROMPTS, PARAMS)
    (cache,) = caches
    rows = cache.k.shape[1]
    logits_part = model.config.vocab_size * (4 + 4 + 8)
    assert (cache.k.nbytes + cache.v.nbytes) == rows * (need(model).per_slot - logits_part)
    half = RunMemory.estimate(model.config, MAX_LEN, torch.bfloat16)
    assert (
        half.per_slot - model.config.vocab_size * (2 + 12)
        == (need(model).per_slot - logits_part) // 2
    )


def test_generator_passes_strict_memory_and_validates_utilization(model, tok):
    assert gh.Generator(model, tok, strict_memory=True).engine.strict_memory is True
    assert gh.Generator(model, tok).engine.strict_memory is False
    with pytest.raises(ValueError, match="memory_utilization"):
        Engine(model, tok, memory_utilization=0.0)


# --- the probes ---


def _fake_cgroup(tmp_path, monkeypatch, proc_lines: str) -> None:
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_lines)
    monkeypatch.setattr(memory, "_PROC_CGROUP", proc)
    monkeypatch.setattr(memory, "_CGROUP_ROOT", tmp_path / "cg")


def test_cgroup_v2_limit_on_an_ancestor_counts(tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, "0::/job/worker\n")
    root = tmp_path / "cg"
    (root / "job" / "worker").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("memory\n")
    (root / "job" / "worker" / "memory.max").write_text("max\n")
    (root / "job" / "worker" / "memory.current").write_text("100\n")
    (root / "job" / "memory.max").write_text(f"{4 << 30}\n")
    (root / "job" / "memory.current").write_text(f"{3 << 30}\n")
    (root / "job" / "memory.stat").write_text(f"anon 5\ninactive_file {256 << 20}\n")
    assert memory.cgroup_available_bytes() == (1 << 30) + (256 << 20)


def test_cgroup_v1_limit_and_unlimited(tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, "4:memory:/svc\n0::/\n")
    d = tmp_path / "cg" / "memory" / "svc"
    d.mkdir(parents=True)
    (d / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (d / "memory.usage_in_bytes").write_text("1000\n")
    assert memory.cgroup_available_bytes() is None  # no limit anywhere
    (d / "memory.limit_in_bytes").write_text(f"{2 << 30}\n")
    (d / "memory.usage_in_bytes").write_text(f"{1 << 30}\n")
    (d / "memory.stat").write_text("cache 9\ntotal_inactive_file 4096\n")
    assert memory.cgroup_available_bytes() == (1 << 30) + 4096


def test_meminfo_and_the_real_machine(tmp_path, monkeypatch):
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 50 kB\n")
    monkeypatch.setattr(memory, "_PROC_MEMINFO", fake)
    assert memory.meminfo_available_bytes() == 50 * 1024
    monkeypatch.undo()
    real = memory.available_bytes("cpu")
    total = int(open("/proc/meminfo").read().split()[1]) * 1024
    assert real is not None and 0 < real <= total
    assert memory.available_bytes("meta") is None
