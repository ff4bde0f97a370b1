"""Packaging checks: the installed package carries its version, typing marker and stubs."""

from __future__ import annotations

import re
from pathlib import Path

import gpt_hybrid

REPO = Path(__file__).resolve().parent.parent


def test_version_matches_pyproject_and_cargo() -> None:
    # The first `version = "..."` of each manifest is the package's own (tomllib needs 3.11).
    for manifest in ("pyproject.toml", "Cargo.toml"):
        text = (REPO / manifest).read_text()
        match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
        assert match is not None, manifest
        assert gpt_hybrid.__version__ == match.group(1), manifest


def test_ships_typing_marker_and_native_stub() -> None:
    package_dir = Path(gpt_hybrid.__file__).parent
    assert (package_dir / "py.typed").is_file()
    stub = (package_dir / "_native.pyi").read_text()
    assert "__version__: str" in stub


def test_public_names_resolve() -> None:
    for name in gpt_hybrid.__all__:
        assert hasattr(gpt_hybrid, name), name


def test_import_is_light_until_the_model_is_used() -> None:
    """`import gpt_hybrid` (tokenizer, sampler, trainer) does not import torch; GPT2 does."""
    import subprocess
    import sys

    code = (
        "import sys, gpt_hybrid as gh\n"
        "assert 'torch' not in sys.modules, 'torch imported eagerly'\n"
        "gh.Tokenizer, gh.sample, gh.train_bpe, gh.SamplingParams\n"
        "assert 'torch' not in sys.modules\n"
        "from gpt_hybrid import GPT2\n"
        "assert 'torch' in sys.modules and GPT2 is gh.GPT2\n"
        "assert 'Generator' in dir(gh)\n"
        "try:\n"
        "    gh.NoSuchName\n"
        "except AttributeError as e:\n"
        "    assert 'NoSuchName' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
