"""``Generator``: a model, its tokenizer and the engine, behind one familiar API.

>>> import gpt_hybrid as gh
>>> llm = gh.Generator.default()  # doctest: +SKIP
>>> llm.generate("The quick brown fox", max_new_tokens=8, seed=0)[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from gpt_hybrid.engine import Completion, Engine
from gpt_hybrid.loading import load_model, resolve_model_dir
from gpt_hybrid.model import GPT2

ASSETS = Path(__file__).resolve().parent / "assets"

Prompt = str | Sequence[int]


class Generator:
    """Text generation with a GPT-2 model: tokenize, run the engine, detokenize.

    Args:
        model: a loaded :class:`GPT2`.
        tokenizer: the model's :class:`gpt_hybrid.Tokenizer`.
        max_batch_size: sequences decoded together (the engine's slots).
        batch_invariant: bit-identical logits for a row whatever else runs (slower; see
            :class:`gpt_hybrid.engine.Engine`).
        strict_memory: raise :class:`gpt_hybrid.memory.CacheMemoryError` when a run's KV
            cache would not fit in the available memory, instead of running it with fewer
            slots and a warning.

    A Generator is safe to share between threads: each ``generate``/``stream`` call owns its
    KV cache and scheduler state, and the model and tokenizer are only read. One ``stream()``
    iterator is for one consumer (a second thread resuming it gets ``ValueError``).

    Example:
        >>> llm = Generator.from_pretrained("path/to/gpt2")  # doctest: +SKIP
        >>> out = llm.generate(["Hello", "The sky"], top_k=50, seed=1)  # doctest: +SKIP
        >>> out[0].text, out[0].finish_reason  # doctest: +SKIP
        (", I'm a student at the University of ...", 'length')
    """

    def __init__(
        self,
        model: GPT2,
        tokenizer: Any,
        *,
        max_batch_size: int = 32,
        batch_invariant: bool = False,
        strict_memory: bool = False,
    ) -> None:
        if tokenizer is not None and tokenizer.n_vocab > model.config.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.n_vocab} tokens but the model's vocabulary is "
                f"{model.config.vocab_size}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.engine = Engine(
            model,
            tokenizer,
            max_batch_size=max_batch_size,
            batch_invariant=batch_invariant,
            strict_memory=strict_memory,
        )

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike[str],
        *,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str = "cpu",
        max_batch_size: int = 32,
        batch_invariant: bool = False,
        strict_memory: bool = False,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> Generator:
        """Loads the model and the tokenizer from one directory or Hugging Face repo id.

        The directory holds ``config.json``, ``model.safetensors`` (or a sharded index) and
        the tokenizer (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``). A repo id goes
        through ``huggingface_hub`` (downloaded, or from its cache when offline).

        Args:
            path_or_repo_id: a local directory, or a repo id like ``"openai-community/gpt2"``.
            dtype: "float32", "bfloat16" or "float16" (bf16 is fast for batches on AMX CPUs).
            device: "cpu" or "cuda".
            max_batch_size: sequences decoded together.
            batch_invariant: bit-identical logits for a row whatever else runs (slower).
            strict_memory: raise instead of shrinking a batch whose KV cache would not fit.
            revision, cache_dir, local_files_only: passed to ``huggingface_hub``.

        Example:
            >>> llm = Generator.from_pretrained("openai-community/gpt2")  # doctest: +SKIP
        """
        from gpt_hybrid.tokenizer import Tokenizer

        directory = resolve_model_dir(
            path_or_repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        model = load_model(directory, dtype=dtype, device=device)
        tokenizer = Tokenizer.from_pretrained(directory)
        return cls(
            model,
            tokenizer,
            max_batch_size=max_batch_size,
            batch_invariant=batch_invariant,
            strict_memory=strict_memory,
        )

    @classmethod
    def default(cls, **kwargs: Any) -> Generator:
        """The small model shipped inside the package (no network needed).

        Example:
            >>> Generator.default().generate("Once upon a time", max_new_tokens=5)  # doctest: +SKIP
        """
        if not (ASSETS / "config.json").is_file():
            raise FileNotFoundError(
                2, "the default model is not installed with this package", str(ASSETS)
            )
        return cls.from_pretrained(ASSETS, **kwargs)

    def __repr__(self) -> str:
        c = self.model.config
        n = self.model.num_parameters()
        size = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"
        dtype = str(self.model.dtype).removeprefix("torch.")
        return (
            f"Generator(params={size}, n_layer={c.n_layer}, n_embd={c.n_embd}, "
            f"n_head={c.n_head}, vocab={c.vocab_size}, context={c.n_positions}, "
            f"device={self.model.device}, dtype={dtype}, "
            f"max_batch_size={self.engine.max_batch_size})"
        )

    # --- generation ---

    def _params(self, params: Any, kwargs: dict[str, Any]) -> Any:
        from gpt_hybrid.sampling_params import SamplingParams

        if params is None:
            return SamplingParams(**kwargs)
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        return dataclasses.replace(params, **kwargs) if kwargs else params

    def _encode(self, prompt: Prompt, i: int, max_new: int, truncation: bool) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt, allowed_special="all")
        elif isinstance(prompt, Sequence) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt
        ):
            ids = list(prompt)
            vocab = self.model.config.vocab_size
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise ValueError(f"prompt {i}: token id {bad[0]} is outside [0, {vocab})")
        else:
            raise TypeError(f"prompt {i} must be a str or a list of int token ids")
        n_ctx = self.model.config.n_positions
        if truncation and len(ids) > n_ctx - max_new:
            ids = ids[-max(1, n_ctx - max_new) :]  # keep the end, which the model continues
        return ids

    def _prompt_list(self, prompts: Prompt | Sequence[Prompt]) -> list[Prompt]:
        if isinstance(prompts, str):
            return [prompts]
        if isinstance(prompts, Sequence) and prompts and all(isinstance(t, int) for t in prompts):
            return [prompts]  # one tokenized prompt
        if isinstance(prompts, Sequence):
            return list(prompts)
        raise TypeError(
            f"prompts must be a str, a list of token ids, or a list of those; got "
            f"{type(prompts).__name__}"
        )

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        params: Any = None,
        *,
        truncation: bool = False,
        **kwargs: Any,
    ) -> list[Completion]:
        """Generates completions for one prompt or many.

        Args:
            prompts: a string, a list of token ids, or a list of either.
            params: a :class:`gpt_hybrid.SamplingParams`; keyword arguments override its fields
                (``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``, ``seed``, ``stop``,
                ``num_return_sequences``, ``logprobs``, ...).
            truncation: keep the last tokens of a prompt too long for the context window
                (otherwise it raises ValueError).

        Returns:
            The completions, prompt by prompt, ``num_return_sequences`` for each.

        Example:
            >>> llm.generate("The capital of France is", temperature=0)  # doctest: +SKIP
            [Completion(text=' Paris, and the', token_ids=[...], finish_reason='length', ...)]
        """
        p = self._params(params, kwargs)
        items = self._prompt_list(prompts)
        ids = [self._encode(x, i, p.max_new_tokens, truncation) for i, x in enumerate(items)]
        return [c for row in self.engine.generate(ids, p) for c in row]

    def stream(
        self, prompt: Prompt, params: Any = None, *, truncation: bool = False, **kwargs: Any
    ) -> Iterator[str]:
        """Yields the text of one completion piece by piece, as it is generated.

        Stop strings never appear: text that could begin one is held back until it cannot.

        Example:
            >>> for piece in llm.stream("Once upon a time", max_new_tokens=30):  # doctest: +SKIP
            ...     print(piece, end="", flush=True)
        """
        p = self._params(params, kwargs)
        if p.num_return_sequences != 1:
            raise ValueError("stream() yields one sequence; use num_return_sequences=1")
        ids = self._encode(prompt, 0, p.max_new_tokens, truncation)
        for event in self.engine.run([ids], p):
            if event.text:
                yield event.text
