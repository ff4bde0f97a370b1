"""The AVX-512 kernels (written with intrinsics for top-p: the exp pass with its scan of the
next row, the bracket's collecting pass) give the very same draws, distributions and
logprobs as the portable AVX2 builds, which ``GPT_HYBRID_NO_AVX512=1`` selects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _cli_util import cli_env

# Rows like a language model's (Zipf over a shuffled vocabulary, plus noise), and rows that
# take the other paths: -inf entries (the next row's max is then scanned, not carried),
# a flat row (the cut far down the tail), a peaked one (the cut among the large weights),
# ties at the top, and huge logits.
SCRIPT = r"""
import hashlib
import numpy as np
import gpt_hybrid as gh

rng = np.random.default_rng(7)
V = 50257
base = -1.1 * np.log(np.arange(1, V + 1))
rows = np.empty((12, V), np.float32)
for r in range(12):
    rows[r, rng.permutation(V)] = base + rng.normal(0.0, 0.3, V)
rows[3, ::7] = -np.inf
rows[4] *= 0.01
rows[5, 17] = 40.0
rows[6, :100] = 30.0
rows[7] *= 1e6
history = [list(range(r, 200 * (r + 1), 37)) for r in range(12)]
cases = [
    dict(top_p=0.9),
    dict(top_p=0.5, temperature=0.7),
    dict(top_p=0.999, min_p=0.01),
    dict(top_p=0.9, repetition_penalty=1.3, history=history),
    dict(top_k=50, top_p=0.95),
    dict(min_p=0.05),
    dict(temperature=1.3),
]
for kw in cases:
    out = gh.sample(rows, seed=list(range(12)), step=3, return_logprobs=True, num_logprobs=3, **kw)
    p = gh.probs(rows, **kw)
    parts = [out.token_ids, out.logprobs, out.raw_logprobs, out.top_token_ids, out.top_logprobs, p]
    print(hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in parts)).hexdigest())
"""


def _has_avx512() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return all(f" {f}" in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq"))


@pytest.mark.skipif(not _has_avx512(), reason="without AVX-512 both runs take the same path")
def test_avx512_and_portable_builds_give_the_same_bits() -> None:
    def run(**env: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            timeout=300,
            env=cli_env(**env),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    wide, portable = run(GPT_HYBRID_NO_AVX512="0"), run(GPT_HYBRID_NO_AVX512="1")
    assert len(wide) == 7
    assert wide == portable
