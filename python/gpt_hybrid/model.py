"""GPT-2 in PyTorch, with Hugging Face's parameter names.

One readable file in the spirit of nanoGPT: configuration, activation table, attention, MLP,
block, model. The module tree matches ``transformers.GPT2LMHeadModel`` name for name
(``transformer.wte``, ``transformer.h.0.attn.c_attn``, ``transformer.ln_f``, ``lm_head``), so a
checkpoint maps onto it one to one. The only difference in layout: HF stores its linear layers as
``Conv1D`` with weights ``[in, out]``; here they are ``nn.Linear`` with ``[out, in]``. The loader
(``loading.py``) assigns the checkpoint's tensors transposed as views, so nothing is copied.

Two ways to run the model:

* ``model(ids)`` — full causal forward, logits ``[B, T, V]`` (for tests, scoring, training);
* ``model.prefill(...)`` / ``model.decode(...)`` — the cached path used by the generation engine
  (``engine.py``): keys and values live in a preallocated cache ``[n_layer, S, H, T_max, D]``
  that is written in place by position.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _native
from .linear import Linear

# Activations accepted in ``config.activation_function``, with HF's meaning for each name.
# "gelu_new"/"gelu_fast"/"gelu_pytorch_tanh" are all the tanh approximation (equal within 1e-6).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "gelu_python": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}

# The names above for the tanh approximation of GELU.
TANH_GELU = frozenset({"gelu_new", "gelu_fast", "gelu_pytorch_tanh"})

# HF config keys that change the math of GPT-2 and that this model does not implement.
# Each maps to the value under which it is harmless; any other value is refused.
_REFUSED_OPTIONS: dict[str, Any] = {
    "add_cross_attention": False,
}


@dataclass
class GPT2Config:
    """The shape and math of a GPT-2 model (the fields of HF's ``GPT2Config`` that matter).

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=100, n_positions=32)
        >>> cfg.head_dim, cfg.inner_dim
        (32, 256)
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    tie_word_embeddings: bool = True
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    initializer_range: float = 0.02
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    # Unknown HF keys (e.g. task_specific_params) are kept so save_pretrained round-trips them.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPT2Config.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPT2Config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner <= 0):
            raise ValueError(
                f"GPT2Config.n_inner must be a positive int or None, got {self.n_inner!r}"
            )
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"GPT2Config.activation_function={self.activation_function!r} is not supported; "
                f"expected one of {sorted(ACTIVATIONS)}"
            )
        if not self.layer_norm_epsilon > 0:
            raise ValueError(
                f"GPT2Config.layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}"
            )

    @property
    def head_dim(self) -> int:
        """Size of one attention head (``n_embd // n_head``)."""
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        """Width of the MLP (``n_inner``, or ``4 * n_embd`` when unset)."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> GPT2Config:
        """Builds a config from HF ``config.json`` content, refusing what would change the math.

        Args:
            d: the parsed JSON object.
            source: where it came from, named in error messages (e.g. the file path).

        Raises:
            ValueError: not a GPT-2 config, or an option this model does not implement.

        Example:
            >>> GPT2Config.from_dict({"model_type": "gpt2", "n_layer": 2}).n_layer
            2
        """
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
        model_type = d.get("model_type")
        if model_type != "gpt2":
            raise ValueError(
                f"{source}: model_type is {model_type!r}, expected 'gpt2' (a GPT-2-family "
                "checkpoint: gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2)"
            )
        for key, harmless in _REFUSED_OPTIONS.items():
            if d.get(key, harmless) != harmless:
                raise ValueError(f"{source}: {key}={d[key]!r} is not supported by gpt_hybrid")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        # HF's defaults for missing keys are the dataclass defaults, except dropout names.
        extra = {k: v for k, v in d.items() if k not in known}
        try:
            return cls(**kwargs, extra=extra)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The HF ``config.json`` content for this config (loadable by ``GPT2Config``).

        Example:
            >>> GPT2Config().to_dict()["model_type"]
            'gpt2'
        """
        d = {k: v for k, v in asdict(self).items() if k != "extra"}
        d.update(self.extra)
        d["model_type"] = "gpt2"
        d["architectures"] = ["GPT2LMHeadModel"]
        return d


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (HF ``GPT2Attention``), with an optional KV cache."""

    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.attn_pdrop = config.attn_pdrop
        scale = 1.0
        if config.scale_attn_weights:
            scale = self.head_dim**-0.5
        if config.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        self.scale = scale
        # HF computes q·k and softmax in float32 for this option; in fp32 it changes nothing.
        self.upcast = config.reorder_and_upcast_attn

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        return q, k, v

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        return self._project(self._sdpa(q, k, v, mask, causal))

    def _sdpa(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        dtype = q.dtype
        if self.upcast and dtype != torch.float32:
            q, k, v = q.float(), k.float(), v.float()
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            scale=self.scale,
            dropout_p=self.attn_pdrop if self.training else 0.0,
        )
        return y.to(dtype)

    def _project(self, y: torch.Tensor) -> torch.Tensor:
        B, _, T, _ = y.shape
        # (B, nh, T, hs) -> (B, T, C)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.resid_dropout(self.c_proj(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        return self._attend(q, k, v, None, True)

    def prefill(
        self, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slots: torch.Tensor
    ) -> torch.Tensor:
        """Causal attention over ``x`` [N, T, C]; writes its keys/values at positions 0..T-1."""
        q, k, v = self._heads(x)
        T = x.shape[1]
        k_cache[slots, :, :T] = k  # cache layer: (S, nh, T_max, hs)
        v_cache[slots, :, :T] = v
        return self._attend(q, k, v, None, True)

    def decode(
        self,
        x: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        rows: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        row_lengths: list[int] | None,
    ) -> torch.Tensor:
        """One token per row (``x`` [B, 1, C], rows 0..B-1 of the cache) at ``positions`` [B]."""
        B = x.shape[0]
        if _native_attention(x, k_cache):
            lengths = positions.numpy() + 1
            return self.decode_native(x[:, 0], k_cache.numpy(), v_cache.numpy(), lengths)[:, None]
        q, k, v = self._heads(x)
        k_cache[rows, :, positions] = k[:, :, 0]  # (B, nh, hs) written at each row's position
        v_cache[rows, :, positions] = v[:, :, 0]
        if row_lengths is None:
            L = mask.shape[-1]
            # Views, not copies: the engine keeps active rows at the front of the cache.
            return self._attend(q, k_cache[:B, :, :L], v_cache[:B, :, :L], mask, False)
        # Batch-invariant path: each row attends over exactly its own length, so its reductions
        # (softmax sum, probs @ V) have the same shape, hence order, whatever else is running.
        y = torch.empty_like(q)  # (B, nh, 1, hs)
        for b, n in enumerate(row_lengths):
            y[b : b + 1] = self._sdpa(
                q[b : b + 1], k_cache[b : b + 1, :, :n], v_cache[b : b + 1, :, :n]
            )
        return self._project(y)

    def decode_native(
        self, x: torch.Tensor, k_cache: np.ndarray, v_cache: np.ndarray, lengths: np.ndarray
    ) -> torch.Tensor:
        """:meth:`decode` where :func:`_native_attention` holds, on ``x`` [B, C] (one row per
        cache slot), with the cache layer as arrays and ``lengths`` = positions + 1 (int64).

        Each row attends over exactly its own length, one (row, head) at a time: as fast as
        the cache can be read, and batch-invariant by construction (rust/attention.rs). The
        kernel also stores the new key and value, straight from c_attn's output.
        """
        qkv = self.c_attn(x).contiguous()
        y = torch.empty(x.shape[0], self.n_head * self.head_dim)
        _native.decode_attention_step(qkv.numpy(), k_cache, v_cache, lengths, self.scale, y.numpy())
        y = self.c_proj(y)
        return self.resid_dropout(y) if self.training else y


def native_decode_attention(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether a model of this dtype and device runs decode attention in the native kernel
    (under ``torch.inference_mode``, with a contiguous cache: as the engine runs it)."""
    return dtype == torch.float32 and torch.device(device).type == "cpu"


def _native_attention(x: torch.Tensor, k_cache: torch.Tensor) -> bool:
    """Whether this decode step's attention can run in the native kernel: float32 on the CPU,
    no gradient, a contiguous cache layer."""
    return (
        native_decode_attention(x.dtype, x.device)
        and native_decode_attention(k_cache.dtype, k_cache.device)
        and not torch.is_grad_enabled()
        and k_cache.is_contiguous()
    )


class MLP(nn.Module):
    """The feed-forward block: c_fc -> activation -> c_proj."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Linear(config.n_embd, config.inner_dim)
        self.act = ACTIVATIONS[config.activation_function]
        # GPT-2's GELU (tanh form) can run inside oneDNN's matmul, on its output while in cache.
        self.tanh_gelu = config.activation_function in TANH_GELU
        self.c_proj = Linear(config.inner_dim, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc.forward_tanh_gelu(x) if self.tanh_gelu else self.act(self.c_fc(x))
        h = self.c_proj(h)
        return self.dropout(h) if self.training else h


class Block(nn.Module):
    """A pre-LayerNorm transformer block."""

    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


# Parameters stored by HF as Conv1D ([in, out]) and here as nn.Linear ([out, in]).
CONV1D_SUFFIXES = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)


def _embedding(n: int, dim: int) -> nn.Embedding:
    """``nn.Embedding(n, dim)`` without its own random init (GPT2 initialises every weight
    itself, and a loaded model is built on the meta device, where torch's ``normal_`` imports
    its compiler stack: 0.9 s and ~150 MB of RSS on the first load in a process)."""
    return nn.Embedding(n, dim, _weight=torch.empty(n, dim))


class GPT2(nn.Module):
    """GPT-2 language model; ``model(ids [B, T])`` returns logits ``[B, T, vocab_size]``.

    ``GPT2(config)`` builds a freshly initialised model (GPT-2's init: N(0, 0.02), residual
    projections scaled by 1/sqrt(2 * n_layer)) that can be trained;
    ``GPT2.from_pretrained(dir)`` loads a checkpoint.

    Example:
        >>> import torch
        >>> model = GPT2(GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=100, n_positions=32))
        >>> model(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 100])
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=_embedding(config.vocab_size, config.n_embd),
                wpe=_embedding(config.n_positions, config.n_embd),
                drop=nn.Dropout(config.embd_pdrop),
                h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
            )
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        if self.transformer.wte.weight.device.type != "meta":
            self.apply(self._init_weights)
            std = config.initializer_range / math.sqrt(2 * config.n_layer)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=std)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights."""
        return self.transformer.wte.weight.dtype

    @property
    def device(self) -> torch.device:
        """The device of the weights."""
        return self.transformer.wte.weight.device

    def num_parameters(self) -> int:
        """Number of distinct parameters (the tied ``lm_head`` counted once).

        Example:
            >>> cfg = GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=10, n_positions=4)
            >>> GPT2(cfg).num_parameters()
            1000
        """
        return sum(p.numel() for p in self.parameters())

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input ids must be an integer tensor, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(
                f"token id out of range [0, {self.config.vocab_size}): "
                f"min {int(ids.min())}, max {int(ids.max())}"
            )
        return self.transformer.drop(self.transformer.wte(ids) + self.transformer.wpe(positions))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits for every position of ``input_ids`` [B, T] (no cache): ``[B, T, V]``."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        T = input_ids.shape[1]
        if T > self.config.n_positions:
            raise ValueError(
                f"sequence of {T} tokens exceeds the context window n_positions="
                f"{self.config.n_positions}"
            )
        pos = torch.arange(T, device=input_ids.device)
        x = self._embed(input_ids, pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))

    def prefill(
        self,
        input_ids: torch.Tensor,
        lengths: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        slots: torch.Tensor,
    ) -> torch.Tensor:
        """Runs right-padded prompts into cache slots; returns each row's last-token logits.

        Args:
            input_ids: [N, T] prompts, right-padded (padding after the last real token never
                influences earlier positions under the causal mask; the padded cache entries are
                overwritten by later decode steps before they are ever attended to).
            lengths: [N] number of real tokens per row (>= 1).
            k_cache, v_cache: [n_layer, S, n_head, T_max, head_dim], written in place.
            slots: [N] cache rows to fill.

        Returns:
            float32 logits [N, V] at position ``lengths - 1`` of each row.
        """
        N, T = input_ids.shape
        x = self._embed(input_ids, torch.arange(T, device=input_ids.device))
        for i, block in enumerate(self.transformer.h):
            x = x + block.attn.prefill(block.ln_1(x), k_cache[i], v_cache[i], slots)
            x = x + block.mlp(block.ln_2(x))
        last = x[torch.arange(N, device=x.device), lengths - 1]  # (N, C): only these need logits
        return self.lm_head(self.transformer.ln_f(last)).float()

    def decode(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        batch_invariant: bool = False,
    ) -> torch.Tensor:
        """One decode step for cache rows 0..B-1: token ``input_ids[b]`` at ``positions[b]``.

        Args:
            input_ids: [B] the newest token of each row.
            positions: [B] its position (= tokens already cached for that row).
            k_cache, v_cache: [n_layer, S, n_head, T_max, head_dim], S >= B, written in place.
            batch_invariant: attend row by row over each row's own length (one attention
                call per row and layer) instead of one masked call over the longest row, so
                that a row's attention does not depend on the other rows' lengths.

        Returns:
            float32 logits [B, V].
        """
        B = input_ids.shape[0]
        x = self._embed(input_ids[:, None], positions[:, None])
        if _native_attention(x, k_cache):
            # The fast path, with the per-step work done once: rows stay [B, C], and the
            # lengths and the cache layers' arrays are made once.
            lengths, ks, vs = positions.numpy() + 1, k_cache.numpy(), v_cache.numpy()
            x = x[:, 0]
            for i, block in enumerate(self.transformer.h):
                h = block.ln_1(x)
                x = x + block.attn.decode_native(h, ks[i], vs[i], lengths)
                x = x + block.mlp(block.ln_2(x))
            return self.lm_head(self.transformer.ln_f(x)).float()
        rows = torch.arange(B, device=input_ids.device)
        L = int(positions.max()) + 1
        # (B, 1, 1, L): row b attends to its own positions 0..positions[b].
        mask = (torch.arange(L, device=positions.device) <= positions[:, None])[:, None, None, :]
        row_lengths = (positions + 1).tolist() if batch_invariant else None
        for i, block in enumerate(self.transformer.h):
            h = block.ln_1(x)
            x = x + block.attn.decode(h, k_cache[i], v_cache[i], rows, positions, mask, row_lengths)
            x = x + block.mlp(block.ln_2(x))
        return self.lm_head(self.transformer.ln_f(x[:, 0])).float()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str = "cpu",
    ) -> GPT2:
        """Loads ``config.json`` + ``model.safetensors`` (or a sharded index) from a directory.

        See :func:`gpt_hybrid.loading.load_model` for what is checked.

        Example:
            >>> model = GPT2.from_pretrained("python/gpt_hybrid/assets")  # doctest: +SKIP
            >>> model.eval()(torch.tensor([[464, 2068]])).shape  # doctest: +SKIP
            torch.Size([1, 2, 50257])
        """
        from gpt_hybrid.loading import load_model

        return load_model(path, dtype=dtype, device=device)

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under HF ``GPT2LMHeadModel`` names and layouts (Conv1D ``[in, out]``)."""
        out = {}
        for name, p in self.state_dict().items():
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue  # tied: HF saves only transformer.wte.weight
            t = p.detach()
            if name.endswith(CONV1D_SUFFIXES):
                t = t.t()
            out[name] = t.contiguous().cpu()
        return out

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Writes ``config.json`` + ``model.safetensors`` in HF's layout.

        ``transformers.GPT2LMHeadModel.from_pretrained(path)`` and ``GPT2.from_pretrained(path)``
        both load the result.

        Example:
            >>> import tempfile
            >>> cfg = GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=10, n_positions=4)
            >>> model = GPT2(cfg)
            >>> d = tempfile.mkdtemp(); model.save_pretrained(d)
            >>> sorted(os.listdir(d))
            ['config.json', 'model.safetensors']
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_dict()
        cfg["torch_dtype"] = str(self.dtype).removeprefix("torch.")
        (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        save_file(self.hf_state_dict(), str(path / "model.safetensors"), metadata={"format": "pt"})
