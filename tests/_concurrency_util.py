"""A deterministic mixed workload for the thread-safety tests and ``scripts/stress_threads.py``.

Task ``i`` is a pure function of ``i`` (plus the shared tokenizer, generator, texts and
logits): encoding, decoding, incremental decoding, seeded sampling, seeded generation or
streaming. Its result is a plain Python value, so a run on many threads can be compared with
``==`` against a single-threaded reference computed first.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

OPS = ("encode", "encode_batch", "decode", "sample", "generate", "stream")


def corpus_texts(corpus: Path, n: int, max_chars: int = 400, seed: int = 0) -> list[str]:
    """``n`` real snippets from every part of the corpus (English, Shakespeare, CJK, others)."""
    rng = random.Random(seed)
    files = sorted(p for p in corpus.rglob("*.txt") if p.is_file())
    out = []
    for i in range(n):
        path = files[i % len(files)]
        data = path.read_bytes()[: 1 << 20].decode("utf-8", errors="ignore")
        start = rng.randrange(max(1, len(data) - max_chars))
        out.append(data[start : start + rng.randint(1, max_chars)])
    return out


class Workload:
    """Numbered tasks over one shared tokenizer and one shared generator.

    Args:
        tok: a :class:`gpt_hybrid.Tokenizer` (GPT-2's).
        llm: a :class:`gpt_hybrid.Generator`.
        texts: real text snippets.
        logits: a fixed float32 ``[B, V]`` matrix for the sampler.
        prompts: short prompts for generation (default: the texts cut to 24 characters).
    """

    def __init__(
        self,
        tok: Any,
        llm: Any,
        texts: list[str],
        logits: np.ndarray,
        prompts: list[str] | None = None,
    ) -> None:
        self.tok = tok
        self.llm = llm
        self.texts = texts
        self.logits = logits
        self.prompts = prompts or [t[:24] or "The" for t in texts]
        self.ids = [tok.encode_ordinary(t) for t in texts]

    def op(self, i: int) -> str:
        """The kind of task ``i``."""
        return OPS[i % len(OPS)]

    def run(self, i: int) -> Any:
        """Runs task ``i``; returns a value comparable with ``==``."""
        return getattr(self, "_" + self.op(i))(i)

    def _encode(self, i: int) -> Any:
        text = self.texts[i % len(self.texts)]
        return (
            self.tok.encode(text, allowed_special="all"),
            self.tok.encode_ordinary(text),
        )

    def _encode_batch(self, i: int) -> Any:
        j = i % len(self.texts)
        batch = (self.texts[j:] + self.texts[:j])[:8]
        # Both the caller's thread count and rayon's global pool are exercised.
        threads = None if i % 2 else 2
        return (
            self.tok.encode_batch(batch, num_threads=threads, allowed_special="all"),
            self.tok.encode_ordinary_batch(batch, num_threads=threads),
        )

    def _decode(self, i: int) -> Any:
        ids = self.ids[i % len(self.ids)]
        dec = self.tok.incremental_decoder()
        step = i % 5 + 1
        pieces = [dec.push(ids[k : k + step]) for k in range(0, len(ids), step)]
        pieces.append(dec.flush())
        return (self.tok.decode(ids), self.tok.decode_bytes(ids), "".join(pieces))

    def _sample(self, i: int) -> Any:
        from gpt_hybrid import sample

        out = sample(
            self.logits,
            temperature=0.5 + (i % 4) * 0.25,
            top_k=[0, 50, 5][i % 3],
            top_p=0.9,
            seed=i,
            step=i % 7,
            return_logprobs=True,
            num_logprobs=3,
        )
        return (
            out.token_ids.tolist(),
            out.logprobs.tolist(),
            out.top_token_ids.tolist(),
        )

    def _generate(self, i: int) -> Any:
        k = i % len(self.prompts)
        prompts = [self.prompts[k], self.prompts[(k + 1) % len(self.prompts)]]
        out = self.llm.generate(
            prompts, max_new_tokens=6, temperature=0.9, top_k=40, seed=i, logprobs=0
        )
        return [(c.text, c.token_ids, c.finish_reason, c.logprobs) for c in out]

    def _stream(self, i: int) -> Any:
        prompt = self.prompts[i % len(self.prompts)]
        return list(self.llm.stream(prompt, max_new_tokens=6, top_p=0.95, seed=i))


def run_together(
    n_threads: int, work: Callable[[int], Any], barrier_timeout: float = 60.0
) -> list[Any]:
    """Runs ``work(t)`` on ``n_threads`` threads released at once by a barrier.

    Returns each thread's result, or the exception it raised, in thread order.
    """
    barrier = threading.Barrier(n_threads, timeout=barrier_timeout)
    results: list[Any] = [None] * n_threads

    def body(t: int) -> None:
        try:
            barrier.wait()
            results[t] = work(t)
        except BaseException as e:  # reported to the caller, which fails the test
            results[t] = e

    threads = [threading.Thread(target=body, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results
