"""Keeps fuzz/regressions/ small: per target, the seeds and every crash input, then the
smallest of the coverage-adding inputs that `scripts/fuzz-all` merged in, up to a byte budget.

    python3 fuzz/prune_regressions.py [--budget 50000]
"""

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "regressions"
HASHED = re.compile(r"^[0-9a-f]{40}$")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=50_000, help="bytes per target")
    args = ap.parse_args()
    for target in sorted(p for p in ROOT.iterdir() if p.is_dir()):
        files = sorted(target.iterdir(), key=lambda p: (p.stat().st_size, p.name))
        # Seeds and crash inputs have readable names; merged corpus inputs are SHA-1 names.
        keep = [p for p in files if not HASHED.match(p.name)]
        used = sum(p.stat().st_size for p in keep)
        dropped = 0
        for p in files:
            if not HASHED.match(p.name):
                continue
            if used + p.stat().st_size <= args.budget:
                used += p.stat().st_size
            else:
                p.unlink()
                dropped += 1
        left = len(list(target.iterdir()))
        print(f"{target.name}: {left} files, {used} bytes ({dropped} dropped)")


if __name__ == "__main__":
    main()
