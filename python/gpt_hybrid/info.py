"""What ``gpt-hybrid info`` reports: versions, the model, the device and the thread counts."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def _model_summary(path: Path) -> dict[str, Any]:
    """Shape of the model in ``path``, read from its files (the weights are not loaded)."""
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    weights = path / "model.safetensors"
    out: dict[str, Any] = {
        "path": str(path),
        "vocab_size": cfg.get("vocab_size"),
        "n_layer": cfg.get("n_layer"),
        "n_head": cfg.get("n_head"),
        "n_embd": cfg.get("n_embd"),
        "n_positions": cfg.get("n_positions"),
    }
    if weights.exists():
        from safetensors import safe_open

        with safe_open(str(weights), framework="np") as f:
            n = 0
            for key in f.keys():
                shape = f.get_slice(key).get_shape()
                size = 1
                for d in shape:
                    size *= d
                n += size
        out["parameters"] = n
        out["weights_bytes"] = weights.stat().st_size
    training = path / "training.json"
    if training.exists():
        meta = json.loads(training.read_text(encoding="utf-8"))
        out["val_loss"] = meta.get("val_loss")
    return out


def collect_info(args: Any) -> dict[str, Any]:
    """Versions, model, device and threads, as a JSON-ready dict.

    ``args`` carries ``model`` (a directory or None for the built-in model) and ``device``.

    Example:
        >>> import argparse
        >>> info = collect_info(argparse.Namespace(model=None, device=None))
        >>> sorted(info)
        ['device', 'model', 'threads', 'versions']
    """
    import torch

    from gpt_hybrid import __version__
    from gpt_hybrid.cli import UserError, default_model_dir

    path = Path(args.model) if args.model else default_model_dir()
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: no config.json (not a model directory)")
    device = getattr(args, "device", None) or "cpu"
    cuda = torch.cuda.is_available()
    return {
        "versions": {
            "gpt-hybrid": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "model": {"builtin": args.model is None, **_model_summary(path)},
        "device": {
            "selected": device,
            "cuda_available": cuda,
            "cuda_devices": [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
            if cuda
            else [],
        },
        "threads": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
    }


def format_info(info: dict[str, Any]) -> str:
    """``collect_info``'s dict as aligned ``section.key: value`` lines.

    Example:
        >>> print(format_info({"versions": {"torch": "2.5"}}))
        versions.torch  2.5
    """
    rows = [
        (f"{section}.{key}", "" if value is None else str(value))
        for section, items in info.items()
        for key, value in items.items()
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
