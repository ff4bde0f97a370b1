"""``python -m gpt_hybrid``: the same command line as ``gpt-hybrid``."""

import sys

from gpt_hybrid.cli import main

if __name__ == "__main__":
    sys.exit(main())
