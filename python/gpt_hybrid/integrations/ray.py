"""Distributed batch generation on Ray Data: ``ds.map_batches(GenerateCompletions, ...)``.

:class:`GenerateCompletions` is a picklable callable class. Ray builds one per actor, which
loads the model once; each call then answers a batch of rows through the engine's continuous
batching. The integration itself does not import Ray (so the callable can be tested and used
without it); :func:`require_ray` gives a clear message when Ray is missing.

Example:
    >>> import ray  # doctest: +SKIP
    >>> from gpt_hybrid.integrations.ray import GenerateCompletions
    >>> ds = ray.data.from_items([{"prompt": "Hello", "seed": 1}])  # doctest: +SKIP
    >>> out = ds.map_batches(  # doctest: +SKIP
    ...     GenerateCompletions,
    ...     fn_constructor_kwargs={"model": None, "max_new_tokens": 16},
    ...     concurrency=2,
    ...     batch_size=64,
    ... )
    >>> out.take(1)[0]["completion"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpt_hybrid.sampling_params import SamplingParams

__all__ = ["GenerateCompletions", "require_ray", "SAMPLING_COLUMNS", "OUTPUT_COLUMNS"]

#: Per-row columns read as sampling parameters (the fields of ``SamplingParams``), when present.
#: Not ``num_return_sequences`` or ``logprobs``: a row gives one completion, without logprobs.
SAMPLING_COLUMNS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(SamplingParams)
    if f.name not in ("num_return_sequences", "logprobs")
)

#: Columns added to every output batch.
OUTPUT_COLUMNS: tuple[str, ...] = (
    "completion",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "error",
)

_INT_FIELDS = {"top_k", "seed", "max_new_tokens"}


def require_ray() -> Any:
    """Imports and returns the ``ray`` module, or raises ImportError naming the ``ray`` extra.

    Example:
        >>> ray = require_ray()  # doctest: +SKIP
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "gpt_hybrid.integrations.ray needs Ray Data: pip install 'gpt-hybrid[ray]' "
            f"(or pip install 'ray[data]'); import failed: {e}"
        ) from e
    return ray


def _is_missing(value: Any) -> bool:
    """A null cell: None, or a float NaN (what pandas/Arrow give for a row without the key)."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return False


def _plain(name: str, value: Any) -> Any:
    """A cell as the Python value SamplingParams expects (numpy scalars and arrays unwrapped)."""
    if isinstance(value, np.ndarray):
        return [_plain(name, v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        f = float(value)
        # A column with a null becomes float: 3.0 in an int field is the int 3.
        if name in _INT_FIELDS and f.is_integer():
            return int(f)
        return f
    if isinstance(value, (list, tuple)):
        return [_plain(name, v) for v in value]
    return value


class GenerateCompletions:
    """A Ray Data ``map_batches`` callable: completes the ``prompt`` column of each batch.

    Args:
        model: a local directory or Hugging Face repo id; None for the default model shipped
            with the package.
        dtype: "float32", "bfloat16" or "float16".
        device: "cpu" or "cuda" (give ``num_gpus=1`` to ``map_batches`` for "cuda").
        max_batch_size: sequences decoded together in the engine (its slots).
        batch_invariant: bit-identical logits for a row whatever else runs (slower).
        prompt_column: the column holding prompts (strings or lists of token ids).
        truncation: keep the end of a prompt too long for the context window, instead of
            answering it with an error.
        **sampling: default sampling parameters (``max_new_tokens``, ``temperature``, ...)
            for rows that do not set them in a column of the same name.

    Each output batch holds the input columns plus ``completion`` (text), ``finish_reason``
    ("stop" or "length"), ``prompt_tokens``, ``completion_tokens`` and ``error``: None, or the
    reason a row could not run (a prompt too long, a bad parameter). A failing row never fails
    the batch; the other rows are still completed. Null cells in a sampling column (a row
    without that key) take the defaults.

    Example:
        >>> fn = GenerateCompletions(max_new_tokens=4, temperature=0)
        >>> out = fn({"prompt": np.array(["Hello", "The sky"]), "seed": np.array([1, 2])})
        >>> len(out["completion"]), out["error"]
        (2, [None, None])
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        dtype: str = "float32",
        device: str = "cpu",
        max_batch_size: int = 32,
        batch_invariant: bool = False,
        prompt_column: str = "prompt",
        truncation: bool = False,
        **sampling: Any,
    ) -> None:
        from gpt_hybrid import Generator

        # Kept so that an instance pickles as its recipe: it reloads the model where unpickled.
        self._init_kwargs: dict[str, Any] = {
            "model": model,
            "dtype": dtype,
            "device": device,
            "max_batch_size": max_batch_size,
            "batch_invariant": batch_invariant,
            "prompt_column": prompt_column,
            "truncation": truncation,
            **sampling,
        }
        self.defaults = SamplingParams.from_dict(sampling)  # bad defaults fail here, at once
        if self.defaults.num_return_sequences != 1:
            raise ValueError("GenerateCompletions answers each row with one completion")
        options: dict[str, Any] = {
            "dtype": dtype,
            "device": device,
            "max_batch_size": max_batch_size,
            "batch_invariant": batch_invariant,
        }
        if model is None:
            self.generator = Generator.default(**options)
        else:
            self.generator = Generator.from_pretrained(model, **options)
        self.prompt_column = prompt_column
        self.truncation = truncation

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        return _rebuild, (self._init_kwargs,)

    def _row_params(self, batch: Mapping[str, Any], i: int) -> Any:
        overrides = {}
        for name in SAMPLING_COLUMNS:
            if name in batch:
                value = batch[name][i]
                if not _is_missing(value):
                    overrides[name] = _plain(name, value)
        return dataclasses.replace(self.defaults, **overrides) if overrides else self.defaults

    def _encode(self, prompt: Any, max_new: int) -> list[int]:
        if isinstance(prompt, (np.ndarray, list, tuple)):
            prompt = [_plain("prompt", t) for t in prompt]
            if not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
                raise TypeError("a prompt must be a string or a list of int token ids")
        elif isinstance(prompt, np.str_):
            prompt = str(prompt)
        if _is_missing(prompt):
            raise ValueError("the prompt is missing")
        if not prompt:
            raise ValueError("the prompt is empty")
        ids = self.generator._encode(prompt, 0, max_new, self.truncation)
        n_ctx = self.generator.model.config.n_positions
        if len(ids) >= n_ctx:
            raise ValueError(
                f"the prompt has {len(ids)} tokens; the model's context window is {n_ctx}, "
                "leaving no room to generate (construct with truncation=True to keep its end)"
            )
        return ids

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        """Completes one batch; returns its columns plus the output columns, row for row."""
        if self.prompt_column not in batch:
            raise KeyError(
                f"the batch has no {self.prompt_column!r} column (columns: {sorted(batch)})"
            )
        n = len(batch[self.prompt_column])
        out: dict[str, list] = {name: list(col) for name, col in batch.items()}
        completion: list[str | None] = [None] * n
        finish: list[str | None] = [None] * n
        prompt_tokens: list[int | None] = [None] * n
        completion_tokens: list[int | None] = [None] * n
        errors: list[str | None] = [None] * n

        rows: list[int] = []
        ids: list[list[int]] = []
        params: list[Any] = []
        for i in range(n):
            try:
                p = self._row_params(batch, i)
                if p.num_return_sequences != 1:
                    raise ValueError("num_return_sequences must be 1")
                tokens = self._encode(batch[self.prompt_column][i], p.max_new_tokens)
            except (TypeError, ValueError, KeyError) as e:
                errors[i] = f"{type(e).__name__}: {e}"
                continue
            rows.append(i)
            ids.append(tokens)
            params.append(p)
        if rows:
            # All runnable rows go to the engine together: continuous batching keeps its slots
            # full, a finished sequence's slot taken at once by the next waiting row.
            for event in self.generator.engine.run(ids, params):
                c = event.completion
                if c is None:
                    continue
                i = rows[event.request]
                completion[i] = c.text
                finish[i] = c.finish_reason
                prompt_tokens[i] = len(c.prompt_token_ids)
                completion_tokens[i] = len(c.token_ids)
        out.update(
            completion=completion,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            error=errors,
        )
        return out


def _rebuild(kwargs: dict[str, Any]) -> GenerateCompletions:
    """Unpickles a :class:`GenerateCompletions` by constructing it again (the model reloads)."""
    return GenerateCompletions(**kwargs)
