"""Loads GPT-2-family checkpoints (HF layout, safetensors only) into :class:`gpt_hybrid.GPT2`.

The steps, in order, so that no partial model is ever returned:

1. read and validate ``config.json`` (a GPT-2 config; options that change the math are
   implemented by :class:`GPT2Config` or refused there);
2. list the tensors of ``model.safetensors``, or of every shard named by
   ``model.safetensors.index.json``, reading only the headers;
3. map their names onto the model's (the ``transformer.`` prefix is optional; the causal-mask
   buffers ``attn.bias``/``attn.masked_bias`` of old checkpoints are skipped; a tied ``lm_head``
   is not needed) and check every key, shape and dtype before touching any data;
4. build the model on the ``meta`` device and assign the memory-mapped tensors in place
   (Conv1D weights as transposed views), converting only when dtype or device differ.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from gpt_hybrid.model import CONV1D_SUFFIXES, GPT2, GPT2Config

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
# Buffers that old HF checkpoints carry (the causal mask); they are derived, not learned.
_SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """Accepts ``torch.float32``/``bfloat16``/``float16`` or their names ("bf16", "float16", ...).

    Example:
        >>> resolve_dtype("bf16")
        torch.bfloat16
    """
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.bfloat16, torch.float16):
            return dtype
    elif isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")


def load_config(path: str | os.PathLike[str]) -> GPT2Config:
    """Reads and validates ``config.json`` from a checkpoint directory.

    Raises:
        OSError: the directory or file is missing or unreadable.
        ValueError: the JSON is malformed or not a supported GPT-2 config.

    Example:
        >>> load_config("python/gpt_hybrid/assets").n_layer  # doctest: +SKIP
        6
    """
    directory = _checked_dir(path)
    file = directory / "config.json"
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise OSError(e.errno, f"cannot read the model config: {e.strerror}", str(file)) from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: invalid JSON at line {e.lineno}: {e.msg}") from None
    return GPT2Config.from_dict(d, source=str(file))


# "gpt2", "openai-community/gpt2", "user/model-v1.5": a Hugging Face repo id, not a path.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# What a snapshot download fetches: the config, the weights (one file or shards) and tokenizer.
_HUB_PATTERNS = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
]


def resolve_model_dir(
    path_or_repo_id: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> Path:
    """A local checkpoint directory for a path, or for a Hugging Face repo id.

    A path that exists is used as is. Otherwise a string shaped like a repo id
    (``"gpt2"``, ``"openai-community/gpt2"``) goes through ``huggingface_hub``: downloaded when
    the Hub is reachable, taken from the local cache when offline (``HF_HUB_OFFLINE=1``,
    ``local_files_only=True``, or no network).

    Raises:
        FileNotFoundError: a path that does not exist, or a repo id that is neither reachable
            nor cached (the message says which).
        ImportError: a repo id was given and ``huggingface_hub`` is not installed.

    Example:
        >>> resolve_model_dir("python/gpt_hybrid/assets")  # doctest: +SKIP
        PosixPath('python/gpt_hybrid/assets')
    """
    path = Path(path_or_repo_id)
    if path.exists():
        return _checked_dir(path)
    name = str(path_or_repo_id)
    if not _REPO_ID.match(name) or name.startswith("."):
        raise FileNotFoundError(2, "model directory not found", name)
    try:
        import huggingface_hub
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ImportError(
            f"{name!r} is not a local directory; loading it as a Hugging Face repo id needs "
            "huggingface_hub (pip install 'gpt-hybrid[hub]')"
        ) from None
    try:
        snapshot = huggingface_hub.snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=_HUB_PATTERNS,
            local_files_only=local_files_only,
        )
    except LocalEntryNotFoundError:
        where = cache_dir or huggingface_hub.constants.HF_HUB_CACHE
        raise FileNotFoundError(
            2,
            f"{name!r} is not a local directory, the Hugging Face Hub cannot be reached (offline) "
            f"and the model is not in the cache at {where}",
            name,
        ) from None
    except huggingface_hub.errors.RepositoryNotFoundError:
        raise FileNotFoundError(
            2, "no such local directory, nor a Hugging Face repo of that id", name
        ) from None
    return Path(snapshot)


def _checked_dir(path: str | os.PathLike[str]) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(2, "model directory not found (or not a directory)", str(directory))
    return directory


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint: one file, or the shards of an index.

    Raises:
        OSError: none found (a ``pytorch_model.bin`` alone is refused: nothing is unpickled).
        ValueError: the index is malformed.
    """
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{index}: not a safetensors index with a weight_map ({e})") from None
        files = [directory / s for s in shards]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(2, f"shard named in {index.name} is missing", str(f))
        return files
    hint = " (pytorch_model.bin is not loaded: weights load from safetensors only)"
    has_bin = (directory / "pytorch_model.bin").exists()
    raise FileNotFoundError(
        2,
        "no model.safetensors or model.safetensors.index.json" + (hint if has_bin else ""),
        str(directory),
    )


def _model_name(key: str) -> str | None:
    """Maps a checkpoint key to the model's parameter name (None: skip it)."""
    if key.endswith(_SKIPPED_SUFFIXES):
        return None
    if key.startswith("transformer.") or key == "lm_head.weight":
        return key
    return "transformer." + key


def load_model(
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str = torch.float32,
    device: torch.device | str = "cpu",
) -> GPT2:
    """Loads a GPT-2 checkpoint directory into an eval-mode :class:`GPT2`.

    Args:
        path: directory with ``config.json`` and ``model.safetensors`` (or a sharded index).
        dtype: float32, bfloat16 or float16 (weights are converted if stored otherwise).
        device: "cpu", "cuda", "cuda:1", ...

    Raises:
        OSError: missing directory or files.
        ValueError: bad config; corrupt/truncated safetensors; a missing, extra or
            wrongly-shaped tensor (the message names the key and the file).

    Example:
        >>> model = load_model("python/gpt_hybrid/assets", dtype="bf16")  # doctest: +SKIP
        >>> model.dtype  # doctest: +SKIP
        torch.bfloat16
    """
    from safetensors import safe_open

    dtype = resolve_dtype(dtype)
    device = torch.device(device)
    directory = _checked_dir(path)
    config = load_config(directory)
    with torch.device("meta"):
        model = GPT2(config)
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}

    # Pass 1: headers only. Every key, shape and dtype is checked before any data is read.
    found: dict[str, tuple[Path, str]] = {}
    handles = []
    try:
        files = weight_files(directory)
        for file in files:
            try:
                handle = safe_open(str(file), framework="pt", device="cpu")
            except Exception as e:  # safetensors raises its own error types for corrupt headers
                raise ValueError(f"{file}: not a valid safetensors file ({e})") from None
            handles.append(handle)
            for key in handle.keys():
                name = _model_name(key)
                if name is None:
                    continue
                if name == "lm_head.weight" and config.tie_word_embeddings:
                    continue  # tied to wte; some checkpoints store the copy anyway
                if name in found:
                    raise ValueError(f"{file}: tensor {key!r} also appears in {found[name][0]}")
                if name not in expected:
                    raise ValueError(f"{file}: unexpected tensor {key!r} for a GPT-2 model")
                sl = handle.get_slice(key)
                shape = tuple(sl.get_shape())
                want = expected[name]
                if name.endswith(CONV1D_SUFFIXES):
                    want = want[::-1]  # stored as Conv1D [in, out]
                if shape != want:
                    raise ValueError(
                        f"{file}: tensor {key!r} has shape {list(shape)}, expected {list(want)} "
                        f"for this config"
                    )
                if sl.get_dtype() not in ("F32", "F16", "BF16", "F64"):
                    raise ValueError(f"{file}: tensor {key!r} has dtype {sl.get_dtype()}")
                found[name] = (file, key)
        missing = sorted(set(expected) - set(found))
        if config.tie_word_embeddings and "lm_head.weight" in missing:
            missing.remove("lm_head.weight")
        if missing:
            raise ValueError(f"{directory}: checkpoint lacks tensors {missing}")

        # Pass 2: assign. The tensors stay memory-mapped unless a dtype/device change copies them.
        by_file = dict(zip(files, handles, strict=True))
        state = {}
        for name, (file, key) in found.items():
            try:
                t = by_file[file].get_tensor(key)
            except Exception as e:
                raise ValueError(f"{file}: cannot read tensor {key!r} ({e})") from None
            # Convert first (a contiguous copy is fast), then view [in, out] as [out, in].
            t = t.to(device=device, dtype=dtype)
            state[name] = t.t() if name.endswith(CONV1D_SUFFIXES) else t
    finally:
        handles.clear()

    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    # Non-persistent state (none today) would still be on meta; refuse rather than crash later.
    leftover = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if leftover:
        raise ValueError(f"{directory}: parameters left unloaded: {leftover}")
    return model.eval()
