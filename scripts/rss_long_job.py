#!/usr/bin/env python3
"""A long generation job with its memory sampled along the way: does RSS stay flat?

Pushes N short prompts (real text from the corpus, or synthetic ones) through a Generator in
chunks, one ``generate`` call per chunk, with a rotating mix of sampling settings (seeded
sampling, greedy, stop strings, logprobs, two sequences per prompt, a streamed prompt now and
then), and every ``--every`` prompts records the process's resident set size
(``/proc/self/statm``) and the number of objects the garbage collector tracks. It prints the
curve, the growth after the warm-up and the slope of a least-squares line through the
post-warm-up samples, and writes a CSV.

    nice -n 19 env PYTHONPATH=python python scripts/rss_long_job.py --prompts 10000 \\
        --csv rss_long_job.csv

``--model default`` (the default) uses the model shipped in the package; ``--model DIR`` any
checkpoint directory. ``tests/test_memory.py`` runs a shorter version of :func:`run_job`.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``, second field)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


@dataclass
class Sample:
    """One point of the curve."""

    prompts_done: int
    rss_mb: float
    gc_objects: int
    seconds: float


def short_prompts(n: int, seed: int = 0, corpus: Path = CORPUS) -> list[str]:
    """``n`` short prompts: lines of the English corpus cut to 1-12 words (synthetic if absent)."""
    rng = random.Random(seed)
    lines: list[str] = []
    english = corpus / "english"
    if english.is_dir():
        for path in sorted(english.glob("*.txt"))[:8]:
            text = path.read_text(encoding="utf-8", errors="replace")
            lines += [ln.strip() for ln in text.splitlines() if len(ln.split()) >= 3]
    if not lines:
        words = "the a of to and in was he it that his her you as had with for she".split()
        lines = [" ".join(rng.choices(words, k=12)) for _ in range(1000)]
    out = []
    for _ in range(n):
        words = rng.choice(lines).split()
        out.append(" ".join(words[: rng.randint(1, 12)]))
    return out


def settings(k: int) -> dict[str, Any]:
    """The sampling settings of chunk ``k``: a rotating mix of what users ask for."""
    mixes: list[dict[str, Any]] = [
        dict(max_new_tokens=8, temperature=0.8, top_k=40, seed=k),
        dict(max_new_tokens=12, temperature=0.0),
        dict(max_new_tokens=10, top_p=0.9, stop=[".", "\n"], seed=k),
        dict(max_new_tokens=6, logprobs=2, seed=k),
        dict(max_new_tokens=4, num_return_sequences=2, temperature=1.0, seed=k),
        dict(max_new_tokens=16, repetition_penalty=1.3, min_p=0.05, seed=k),
    ]
    return mixes[k % len(mixes)]


def run_job(
    llm: Any,
    prompts: list[str],
    *,
    every: int = 250,
    chunk: int = 50,
    on_sample: Callable[[Sample], None] | None = None,
) -> list[Sample]:
    """Runs ``prompts`` through ``llm`` in chunks; samples memory every ``every`` prompts."""
    t0 = time.perf_counter()

    def sample(done: int) -> None:
        # Minus the samples themselves: the curve's own objects are not the job's.
        objects = len(gc.get_objects()) - len(samples)
        s = Sample(done, rss_bytes() / 2**20, objects, time.perf_counter() - t0)
        samples.append(s)
        if on_sample is not None:
            on_sample(s)

    samples: list[Sample] = []
    sample(0)
    done = 0
    for k, start in enumerate(range(0, len(prompts), chunk)):
        batch = prompts[start : start + chunk]
        out = llm.generate(batch, truncation=True, **settings(k))
        assert len(out) == len(batch) * settings(k).get("num_return_sequences", 1)
        if k % 10 == 0:  # the streaming path too
            "".join(llm.stream(batch[0], max_new_tokens=8, seed=k))
        del out
        before, done = done, done + len(batch)
        if done // every > before // every or done == len(prompts):
            sample(done)
    return samples


def growth(samples: list[Sample], warmup: int) -> tuple[float, float, float]:
    """After ``warmup`` prompts: (RSS growth MB, least-squares slope MB/1000 prompts, objects)."""
    post = [s for s in samples if s.prompts_done >= warmup]
    if len(post) < 2:
        return 0.0, 0.0, 0.0
    xs = [s.prompts_done / 1000 for s in post]
    ys = [s.rss_mb for s in post]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return ys[-1] - ys[0], slope, float(post[-1].gc_objects - post[0].gc_objects)


def load(model: str, max_batch_size: int) -> Any:
    import gpt_hybrid as gh

    if model == "default":
        return gh.Generator.default(max_batch_size=max_batch_size)
    return gh.Generator.from_pretrained(model, max_batch_size=max_batch_size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=250, help="sample RSS every N prompts")
    ap.add_argument("--chunk", type=int, default=50, help="prompts per generate() call")
    ap.add_argument("--warmup", type=int, default=1000, help="prompts before growth counts")
    ap.add_argument("--model", default="default", help='"default" or a checkpoint directory')
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--csv", type=Path, default=None, help="write the curve here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    llm = load(args.model, args.max_batch_size)
    prompts = short_prompts(args.prompts)
    print(f"# {llm!r}")
    print(f"# python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} cpus")
    print(f"{'prompts':>8} {'rss_MB':>9} {'gc_objects':>11} {'seconds':>8}")

    def show(s: Sample) -> None:
        print(
            f"{s.prompts_done:8d} {s.rss_mb:9.1f} {s.gc_objects:11d} {s.seconds:8.1f}", flush=True
        )

    samples = run_job(llm, prompts, every=args.every, chunk=args.chunk, on_sample=show)
    grew, slope, objs = growth(samples, args.warmup)
    print(
        f"after {args.warmup} warm-up prompts: RSS {grew:+.1f} MB, slope {slope:+.2f} MB per "
        f"1000 prompts, gc objects {objs:+.0f}; peak {max(s.rss_mb for s in samples):.1f} MB"
    )
    if args.csv is not None:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["prompts_done", "rss_mb", "gc_objects", "seconds"])
            for s in samples:
                w.writerow([s.prompts_done, f"{s.rss_mb:.2f}", s.gc_objects, f"{s.seconds:.2f}"])
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
