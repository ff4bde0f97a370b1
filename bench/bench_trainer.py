"""BPE training time: gpt_hybrid.train_bpe against Hugging Face tokenizers' BpeTrainer.

Both train a byte-level BPE with GPT-2's split pattern on the same files (by default the
32 MB English corpus) to the same vocabulary sizes, in this one process, alternating runs.
Each run is timed in wall-clock and in process CPU time (all threads), since the machine is
shared; the medians are printed with the ratio, the machine and the versions.

HF is given the files through ``Tokenizer.train(files)``, its own parallel file reader (it
feeds one line at a time; we read each file whole, see docs/trainer.md).

    python bench/bench_trainer.py [--corpus DIR] [--vocab 8192 32000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gpt_hybrid as gh
import tokenizers
from gpt_hybrid import training
from tokenizers import models, pre_tokenizers, trainers

REPO = Path(__file__).resolve().parent.parent
# Where the tests look for the shared corpus (tests/conftest.py), English part.
_CANDIDATES = [Path(p) for p in (os.environ.get("GPT_HYBRID_CORPUS"),) if p] + [
    REPO.parent / "shared" / "corpus",
    Path("/work/shared/corpus"),
]
DEFAULT_CORPUS = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[-1]) / "english"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def train_ours(files: list[Path], vocab_size: int) -> int:
    trained = training._train(files, vocab_size, "gpt2", ["<|endoftext|>"])
    return len(trained.mergeable_ranks) + len(trained.special_tokens)


def train_hf(files: list[Path], vocab_size: int) -> int:
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(f) for f in files], trainer=trainer)
    return tok.get_vocab_size()


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    size = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--vocab", type=int, nargs="+", default=[8192, 32000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    files = sorted(args.corpus.glob("*.txt"))
    if not files:
        parser.error(f"no *.txt files in {args.corpus}")
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()}")
    print(
        f"versions: gpt_hybrid {gh.__version__}, tokenizers {tokenizers.__version__}, "
        f"python {platform.python_version()}"
    )
    print(f"corpus: {args.corpus} ({len(files)} files, {megabytes:.1f} MB)")
    print(f"repeats: {args.repeats} (medians)\n")
    header = f"{'vocab':>6}  {'trainer':<16}{'wall s':>8}{'cpu s':>8}{'vocab out':>10}"
    print(header)
    for vocab_size in args.vocab:
        runs: dict[str, list[tuple[float, float, int]]] = {"gpt_hybrid": [], "hf tokenizers": []}
        for _ in range(args.repeats):
            runs["gpt_hybrid"].append(timed(lambda v=vocab_size: train_ours(files, v)))
            runs["hf tokenizers"].append(timed(lambda v=vocab_size: train_hf(files, v)))
        medians = {}
        for name, results in runs.items():
            wall = statistics.median(r[0] for r in results)
            cpu = statistics.median(r[1] for r in results)
            medians[name] = (wall, cpu)
            print(f"{vocab_size:>6}  {name:<16}{wall:>8.2f}{cpu:>8.2f}{results[0][2]:>10}")
        ours, hf = medians["gpt_hybrid"], medians["hf tokenizers"]
        print(f"{vocab_size:>6}  {'hf / ours':<16}{hf[0] / ours[0]:>7.2f}x{hf[1] / ours[1]:>7.2f}x")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
