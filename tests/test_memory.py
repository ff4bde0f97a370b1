"""A long job's memory stays flat: a short run of ``scripts/rss_long_job.py`` in CI.

2,500 short prompts go through the default model in 50 ``generate`` calls with a rotating mix
of settings; memory is sampled every 100 prompts and the first 1,500 are warm-up (allocator
pools, torch's kernels and the tokenizer's caches settle there; oneDNN builds a kernel per
padded batch shape (``linear.padded_rows``), ~50 shapes here, and meets its last few
between prompts 500 and 1,500). Two bounds, each aimed at a
kind of leak:

* **Python objects** (``gc.get_objects``) — exact, not noisy: after warm-up the count moves
  by a handful at most (measured: 0). One object kept per ``generate`` call would add 20 over
  the 1,000 post-warm-up prompts, one per prompt 1,000; the bound is 10.
* **RSS** — noisy: the allocator keeps or returns freed blocks as it likes, so RSS swings by
  about 10 MB between samples on a flat job (measured: 726-738 MB over 10,000 prompts with
  MKL matmuls; with oneDNN's kernels ~130 MB higher, and as flat once they are built). The
  median of the last three samples may exceed that of the first three post-warm-up ones by at
  most 16 MB. Leaks that matter in a job of hours are larger than that within 1,000 prompts:
  a logits buffer kept per decode step (>= 150 MB here), a KV cache kept per run (~8 MB each,
  x 20 runs), or a native buffer per prompt of 16 KB or more.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import gpt_hybrid as gh
import pytest
from _engine_util import one_torch_thread  # noqa: F401  (an autouse fixture)

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "rss_long_job.py"
PROMPTS, EVERY, WARMUP = 2500, 100, 1500
RSS_BOUND_MB, OBJECTS_BOUND = 16.0, 10


@pytest.fixture(scope="module")
def job():
    spec = importlib.util.spec_from_file_location("rss_long_job", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def curve(job, corpus_dir):
    llm = gh.Generator.default(max_batch_size=16)
    prompts = job.short_prompts(PROMPTS, corpus=corpus_dir)
    return job.run_job(llm, prompts, every=EVERY, chunk=50)


def test_curve_covers_the_job(curve):
    assert [s.prompts_done for s in curve] == list(range(0, PROMPTS + 1, EVERY))
    assert all(s.rss_mb > 0 for s in curve)


def test_python_objects_stay_flat_after_warmup(curve):
    post = [s.gc_objects for s in curve if s.prompts_done >= WARMUP]
    assert max(post) - post[0] <= OBJECTS_BOUND, post


def test_rss_stays_flat_after_warmup(curve):
    post = [s.rss_mb for s in curve if s.prompts_done >= WARMUP]
    grew = statistics.median(post[-3:]) - statistics.median(post[:3])
    assert grew <= RSS_BOUND_MB, [round(x, 1) for x in post]


def test_growth_summary_detects_a_leak(job):
    """The script's own growth figures on a synthetic leaking curve (1 MB and 5 objects/100)."""
    leaking = [job.Sample(n, 700 + n / 100, 1000 + n // 20, 0.0) for n in range(0, 2001, 100)]
    grew, slope, objects = job.growth(leaking, warmup=500)
    assert grew == pytest.approx(15.0)
    assert slope == pytest.approx(10.0)
    assert objects == 75
