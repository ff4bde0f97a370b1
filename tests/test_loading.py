"""Checkpoint loading (loading.py): layouts HF and OpenAI use, and every kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _engine_util import (
    load_hf,
    make_hf_checkpoint,
    make_hub_cache,
    one_torch_thread,  # noqa: F401  (an autouse fixture)
)
from gpt_hybrid.loading import load_model, resolve_model_dir
from gpt_hybrid.model import GPT2
from safetensors.torch import load_file, save_file


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_hf_checkpoint(tmp_path_factory.mktemp("ckpt"), n_layer=2)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def want(ckpt, ids) -> torch.Tensor:
    with torch.no_grad():
        return load_hf(ckpt)(ids).logits


def copy_with(src: Path, dst: Path, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A copy of checkpoint ``src`` with its config, and ``tensors`` as its weights."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "config.json", dst / "config.json")
    if tensors is not None:
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def logits(path: Path, ids: torch.Tensor, **kw) -> torch.Tensor:
    with torch.no_grad():
        return load_model(path, **kw)(ids)


def test_hf_layout_with_prefix(ckpt, ids, want):
    assert "transformer.wte.weight" in load_file(ckpt / "model.safetensors")
    assert (logits(ckpt, ids) - want).abs().max() < 1e-4


def test_openai_layout_without_prefix_with_mask_buffers_and_lm_head(ckpt, ids, want, tmp_path):
    """The hub's gpt2 checkpoint: no ``transformer.``, ``h.N.attn.bias`` buffers kept."""
    tensors = {
        k.removeprefix("transformer."): v for k, v in load_file(ckpt / "model.safetensors").items()
    }
    tensors["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 128, 128))
    tensors["h.1.attn.masked_bias"] = torch.tensor(-1e4)
    tensors["lm_head.weight"] = tensors["wte.weight"].clone()
    path = copy_with(ckpt, tmp_path / "openai", tensors)
    assert (logits(path, ids) - want).abs().max() < 1e-4


def test_sharded_index(ckpt, ids, want, tmp_path):
    tensors = load_file(ckpt / "model.safetensors")
    path = copy_with(ckpt, tmp_path / "sharded")
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(path / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, file))
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert (logits(path, ids) - want).abs().max() < 1e-4
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shard"):
        load_model(path)


def test_weights_are_assigned_not_copied(ckpt):
    """Conv1D weights become transposed views of the memory-mapped checkpoint tensors."""
    model = load_model(ckpt)
    w = model.transformer.h[0].attn.c_attn.weight
    assert w.shape == (192, 64) and not w.is_contiguous() and w.t().is_contiguous()
    assert model.lm_head.weight is model.transformer.wte.weight
    assert not model.training


@pytest.mark.parametrize("dtype", ["bf16", torch.float16, "float32"])
def test_dtypes(ckpt, dtype):
    model = load_model(ckpt, dtype=dtype)
    assert all(p.dtype == model.dtype for p in model.parameters())
    assert str(model.dtype).endswith(
        {"bf16": "bfloat16"}.get(str(dtype), str(dtype).split(".")[-1])
    )


def test_bad_dtype(ckpt):
    with pytest.raises(ValueError, match="dtype"):
        load_model(ckpt, dtype="int8")


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found") as e:
        load_model(tmp_path / "nope")
    assert "nope" in str(e.value)


def test_missing_weights_and_pickles_refused(ckpt, tmp_path):
    path = copy_with(ckpt, tmp_path / "bin")
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04not unpickled")
    with pytest.raises(FileNotFoundError, match="safetensors only"):
        load_model(path)


def test_missing_config(ckpt, tmp_path):
    path = tmp_path / "noconfig"
    path.mkdir()
    shutil.copy(ckpt / "model.safetensors", path)
    with pytest.raises(OSError, match="config"):
        load_model(path)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"model_type": "llama"}, "model_type is 'llama'"),
        ({"activation_function": "gelu_42"}, "activation_function"),
        ({"add_cross_attention": True}, "add_cross_attention"),
        ({"n_embd": 65}, "divisible"),
        ({"layer_norm_epsilon": 0}, "layer_norm_epsilon"),
    ],
)
def test_bad_config(ckpt, tmp_path, change, match):
    path = copy_with(ckpt, tmp_path / "cfg")
    shutil.copy(ckpt / "model.safetensors", path)
    cfg = json.loads((path / "config.json").read_text()) | change
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=match) as e:
        load_model(path)
    assert "config.json" in str(e.value)


def test_malformed_config_json(ckpt, tmp_path):
    path = copy_with(ckpt, tmp_path / "json")
    (path / "config.json").write_text('{"model_type": "gpt2",\n oops}')
    with pytest.raises(ValueError, match="config.json: invalid JSON at line 2"):
        load_model(path)


def test_truncated_and_corrupt_safetensors(ckpt, tmp_path):
    data = (ckpt / "model.safetensors").read_bytes()
    path = copy_with(ckpt, tmp_path / "trunc")
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_model(path)
    (path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="not a valid safetensors"):
        load_model(path)
    (path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_model(path)


def test_missing_extra_and_misshapen_tensors(ckpt, tmp_path):
    tensors = load_file(ckpt / "model.safetensors")
    missing = {k: v for k, v in tensors.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ValueError, match=r"lacks tensors \['transformer.h.1.mlp.c_fc.bias'\]"):
        load_model(copy_with(ckpt, tmp_path / "missing", missing))
    extra = tensors | {"transformer.h.1.mlp.gate.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="unexpected tensor 'transformer.h.1.mlp.gate.weight'"):
        load_model(copy_with(ckpt, tmp_path / "extra", extra))
    bad = tensors | {"transformer.h.0.attn.c_attn.weight": torch.zeros(192, 64)}  # not transposed
    with pytest.raises(
        ValueError,
        match=r"'transformer.h.0.attn.c_attn.weight' has shape \[192, 64\], expected \[64, 192\]",
    ):
        load_model(copy_with(ckpt, tmp_path / "shape", bad))
    ints = tensors | {"transformer.ln_f.bias": torch.zeros(64, dtype=torch.int32)}
    with pytest.raises(ValueError, match="dtype I32"):
        load_model(copy_with(ckpt, tmp_path / "int", ints))


def test_untied_checkpoint_needs_lm_head(tmp_path, ids):
    path = make_hf_checkpoint(tmp_path / "untied", tie_word_embeddings=False)
    model = load_model(path)
    assert model.lm_head.weight is not model.transformer.wte.weight
    tensors = load_file(path / "model.safetensors")
    del tensors["lm_head.weight"]
    with pytest.raises(ValueError, match="lm_head.weight"):
        load_model(copy_with(path, tmp_path / "nohead", tensors))


def test_gpt2_from_pretrained_is_load_model(ckpt, ids, want):
    with torch.no_grad():
        assert (GPT2.from_pretrained(ckpt)(ids) - want).abs().max() < 1e-4


# --- Loading by name: a Hugging Face cache laid out on disk, no network ---


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_repo_id_from_cache_offline(ckpt, tmp_path, offline, ids, want):
    snap = make_hub_cache(tmp_path / "hub", "someone/tiny-gpt2", ckpt)
    path = resolve_model_dir("someone/tiny-gpt2", cache_dir=tmp_path / "hub")
    assert path == snap
    assert (logits(path, ids) - want).abs().max() < 1e-4
    assert (
        resolve_model_dir("someone/tiny-gpt2", cache_dir=tmp_path / "hub", local_files_only=True)
        == snap
    )


def test_repo_id_not_cached_offline_says_so(tmp_path, offline):
    with pytest.raises(FileNotFoundError, match="offline.*not in the cache") as e:
        resolve_model_dir("someone/absent", cache_dir=tmp_path / "hub")
    assert "someone/absent" in str(e.value)


def test_local_path_wins_and_bad_paths(ckpt, tmp_path):
    assert resolve_model_dir(ckpt) == ckpt
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_model_dir(str(tmp_path / "a" / "b" / "c"))
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        resolve_model_dir(file)
