"""Measures where batch invariance breaks: a row's logits alone vs. among 15 other rows.

For GPT-2-small shapes (random weights), one prompt is prefilled and decoded step by step
twice with the same tokens: alone (1 running row), and in slot ``k`` among 15 other running
rows of other lengths. The script counts the decode steps whose logits for that row differ
bit for bit, for each ``min_decode_rows`` (the engine pads a decode batch to at least that
many rows), torch thread count and dtype. The engine's default (4) comes from this table.

    PYTHONPATH=python python bench/bench_batch_invariance.py [--trials 6] [--steps 16]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from gpt_hybrid.engine import Engine, KVCache
from gpt_hybrid.model import GPT2, GPT2Config

SAMPLING = dict(top_k=50, top_p=0.95)


def measure(
    model: GPT2, min_rows: int, invariant: bool, trials: int, steps: int
) -> tuple[int, int, float]:
    """(steps whose logits differ, steps compared, max |difference|)."""
    engine = Engine(
        model, None, max_batch_size=16, min_decode_rows=min_rows, batch_invariant=invariant
    )
    g = torch.Generator().manual_seed(0)
    differ, total, worst = 0, 0, 0.0
    for t in range(trials):
        prompt = torch.randint(0, 50000, (32,), generator=g).tolist()
        others = [torch.randint(0, 50000, (8 + 13 * i,), generator=g).tolist() for i in range(15)]
        k = (5 * t) % 16  # the row's slot among the 16
        feed = torch.randint(0, 50000, (steps,), generator=g).tolist()

        alone = KVCache(model.config, 16, 256, model.dtype)
        engine.prefill(alone, prompt, 0)
        crowd = KVCache(model.config, 16, 256, model.dtype)
        slots = others[:k] + [prompt] + others[k:]
        for b, p in enumerate(slots):
            engine.prefill(crowd, p, b)
        tokens = np.zeros(16, dtype=np.int64)
        for s in range(steps):
            tokens[0] = feed[s]
            a = engine.decode_step(alone, tokens, 1)[0]
            tokens[:] = torch.randint(0, 50000, (16,), generator=g).numpy()
            tokens[k] = feed[s]
            c = engine.decode_step(crowd, tokens, 16)[k]
            total += 1
            if not torch.equal(a, c):
                differ += 1
                worst = max(worst, (a - c).abs().max().item())
    return differ, total, worst


def measure_tokens(model: GPT2, invariant: bool, trials: int, steps: int, **sampling) -> int:
    """How many of ``trials`` seeded requests sample other tokens alone than among 15 others."""
    from gpt_hybrid.sampling_params import SamplingParams

    class _NoText:  # token ids only: a detokenizer that returns no text
        eot_token = None

        def incremental_decoder(self):  # noqa: D102
            return self

        def push(self, ids):  # noqa: D102
            return ""

        def flush(self):  # noqa: D102
            return ""

    g = torch.Generator().manual_seed(1)
    alone = Engine(model, _NoText(), max_batch_size=16, batch_invariant=invariant)
    differ = 0
    for t in range(trials):
        prompts = [torch.randint(0, 50000, (8 + 13 * i,), generator=g).tolist() for i in range(16)]
        params = [
            SamplingParams(max_new_tokens=steps, seed=100 * t + i, ignore_eos=True, **sampling)
            for i in range(16)
        ]
        k = (5 * t) % 16
        solo = alone.generate([prompts[k]], params[k])[0][0].token_ids
        crowd = alone.generate(prompts, params)[k][0].token_ids
        differ += solo != crowd
    return differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tokens", type=int, default=0, help="measure sampled tokens instead")
    args = ap.parse_args()
    torch.manual_seed(0)
    base = GPT2(GPT2Config()).eval()
    print(f"torch {torch.__version__}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    if args.tokens:
        torch.set_num_threads(int(args.threads.split(",")[0]))
        print("| sampling | requests whose tokens differ alone vs among 15 (fast path) |")
        print("|---|---:|")
        for name, kw in (("temperature 1", {}), ("top-k 50, top-p 0.95", SAMPLING)):
            d = measure_tokens(base, False, args.tokens, args.steps * 4, **kw)
            print(f"| {name} | {d}/{args.tokens} |", flush=True)
        return
    print(
        "| dtype | threads | min_decode_rows | attention | steps with different logits "
        "| max abs diff |"
    )
    print("|---|---:|---:|---|---:|---:|")
    for dtype in (torch.float32, torch.bfloat16):
        model = base.to(dtype)
        for threads in map(int, args.threads.split(",")):
            torch.set_num_threads(threads)
            for min_rows, invariant in ((1, False), (4, False), (1, True), (4, True)):
                d, n, w = measure(model, min_rows, invariant, args.trials, args.steps)
                name = str(dtype).removeprefix("torch.")
                attn = "row by row" if invariant else "one masked call"
                print(
                    f"| {name} | {threads} | {min_rows} | {attn} | {d}/{n} | {w:.2e} |", flush=True
                )


if __name__ == "__main__":
    main()
