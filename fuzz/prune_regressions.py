"""Keeps fuzz/regressions/ small: per target, the seeds and every crash input, then a sample
of the coverage-adding inputs that `scripts/fuzz-all` merged in (an even spread over their
sizes), up to a byte budget.

    python3 fuzz/prune_regressions.py [--budget 45000] [--files 150] [target ...]
"""

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "regressions"
HASHED = re.compile(r"^[0-9a-f]{40}$")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=45_000, help="bytes per target")
    ap.add_argument("--files", type=int, default=150, help="merged inputs kept per target")
    ap.add_argument("targets", nargs="*", help="default: every target")
    args = ap.parse_args()
    dirs = [ROOT / t for t in args.targets] or sorted(p for p in ROOT.iterdir() if p.is_dir())
    for target in dirs:
        files = sorted(target.iterdir(), key=lambda p: (p.stat().st_size, p.name))
        # Seeds and crash inputs have readable names; merged corpus inputs are SHA-1 names.
        used = sum(p.stat().st_size for p in files if not HASHED.match(p.name))
        merged = [p for p in files if HASHED.match(p.name)]
        # An even spread over the sizes (small and large inputs), within the byte budget.
        step = max(1, len(merged) / args.files)
        chosen = {merged[int(i * step)] for i in range(min(args.files, len(merged)))}
        for p in merged:
            if p in chosen and used + p.stat().st_size <= args.budget:
                used += p.stat().st_size
            else:
                p.unlink()
        left = len(list(target.iterdir()))
        print(f"{target.name}: {left} files, {used} bytes")


if __name__ == "__main__":
    main()
