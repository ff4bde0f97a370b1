"""Batch generation on Ray Data: JSONL or Parquet prompts in, Parquet completions out.

Each input row has a ``prompt`` and optionally per-row sampling columns (``temperature``,
``top_k``, ``top_p``, ``seed``, ``max_new_tokens``, ...). The output holds the input columns
plus ``completion``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens`` and ``error``.

On a laptop (a local Ray instance is started)::

    python examples/ray_batch.py prompts.jsonl out/ --actors 2 --max-new-tokens 32

Against a cluster (the model path must be readable on every node, or a Hub repo id)::

    python examples/ray_batch.py s3://bucket/prompts.parquet s3://bucket/out/ \\
        --address ray://head:10001 --model openai-community/gpt2 --actors 16 --gpus-per-actor 1
"""

from __future__ import annotations

import argparse
import time

from gpt_hybrid.integrations.ray import GenerateCompletions, require_ray


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", help="a .jsonl/.json or .parquet file (or directory, or URI)")
    ap.add_argument("output", help="a directory (or URI) for the Parquet output")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    ap.add_argument("--model", default=None, help="directory or repo id (default: built-in)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--actors", type=int, default=1, help="model replicas (actor pool size)")
    ap.add_argument("--gpus-per-actor", type=float, default=0)
    ap.add_argument(
        "--cpus-per-actor", type=float, default=1, help="below 1 leaves CPUs for read/write"
    )
    ap.add_argument("--batch-size", type=int, default=64, help="rows per map_batches call")
    ap.add_argument("--max-batch-size", type=int, default=32, help="engine slots per actor")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args(argv)

    ray = require_ray()
    ray.init(address=args.address)
    src = args.input.rstrip("/")
    if src.endswith(".parquet"):
        ds = ray.data.read_parquet(args.input)
    else:
        ds = ray.data.read_json(args.input, lines=True)
    out = ds.map_batches(
        GenerateCompletions,
        fn_constructor_kwargs={
            "model": args.model,
            "dtype": args.dtype,
            "device": args.device,
            "max_batch_size": args.max_batch_size,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
        },
        concurrency=args.actors,
        batch_size=args.batch_size,
        num_gpus=args.gpus_per_actor,
        num_cpus=args.cpus_per_actor,
    )
    t0 = time.monotonic()
    out.write_parquet(args.output)
    elapsed = time.monotonic() - t0
    result = ray.data.read_parquet(args.output)
    rows = result.count()
    tokens = result.sum("completion_tokens") or 0
    errors = result.filter(lambda r: r["error"] is not None).count()
    print(
        f"{rows} rows ({errors} errors), {tokens} tokens in {elapsed:.1f} s: "
        f"{rows / elapsed:.1f} rows/s, {tokens / elapsed:.0f} tok/s -> {args.output}"
    )


if __name__ == "__main__":
    main()
