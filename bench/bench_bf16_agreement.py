"""Greedy agreement of our engine in bfloat16 with itself in float32 (issue 4's bf16 figure).

Same GPT-2-small-shaped checkpoint as ``bench_generate.py`` (``GPT2Config()``, random weights,
seeded), the same 16 random 32-token prompts, 32 greedy tokens each, in float32 and in bfloat16.
Prints how many sequences are identical and how many tokens agree position by position (a
divergence, once it happens, carries on).

    PYTHONPATH=python python bench/bench_bf16_agreement.py [--prompts 16] [--new 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_generate as bg  # noqa: E402  (the shared checkpoint and prompts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import gpt_hybrid as gh

    g = torch.Generator().manual_seed(bg.SEED)
    prompts = [torch.randint(0, 50000, (32,), generator=g).tolist() for _ in range(args.prompts)]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        bg.make_checkpoint(Path(tmp))
        for dtype in ("float32", "bfloat16"):
            llm = gh.Generator.from_pretrained(tmp, dtype=dtype, max_batch_size=args.prompts)
            done = llm.generate(prompts, max_new_tokens=args.new, temperature=0.0, ignore_eos=True)
            out[dtype] = [c.token_ids for c in done]
    a, b = out["float32"], out["bfloat16"]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    tokens = sum(p == q for x, y in zip(a, b, strict=True) for p, q in zip(x, y, strict=True))
    first = [
        next((i for i, (p, q) in enumerate(zip(x, y, strict=True)) if p != q), None)
        for x, y in zip(a, b, strict=True)
    ]
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    print(
        f"greedy bf16 vs fp32: {same}/{len(a)} sequences identical, "
        f"{tokens}/{len(a) * args.new} tokens equal position by position; "
        f"first divergence per sequence: {first}"
    )


if __name__ == "__main__":
    main()
