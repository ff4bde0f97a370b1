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
