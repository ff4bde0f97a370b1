"""Per-request sampling settings: ``SamplingParams`` and the range checks shared with ``sample``.

A ``SamplingParams`` carries everything that decides how one request's tokens are drawn and
when its generation stops. It is validated when built, so a bad value fails at the call that
introduced it, not deep inside a batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Presence and frequency penalties are limited to OpenAI's range.
MAX_ADDITIVE_PENALTY = 2.0


def _is_int(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or _is_numpy_int(value)


def _is_numpy_int(value: object) -> bool:
    import numpy as np

    return isinstance(value, np.integer)


def _is_real(value: object) -> bool:
    import numpy as np

    return (isinstance(value, (int, float, np.integer, np.floating))) and not isinstance(
        value, bool
    )


def check_float(name: str, value: object) -> float:
    """Checks one scalar float parameter of the sampler and returns it as ``float``.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is outside the parameter's range.

    >>> check_float("top_p", 0.9)
    0.9
    """
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)  # type: ignore[arg-type]
    if name == "temperature":
        ok, want = math.isfinite(v) and v >= 0.0, "finite and >= 0 (0 means greedy)"
    elif name == "top_p":
        ok, want = 0.0 < v <= 1.0, "in (0, 1]"
    elif name == "min_p":
        ok, want = 0.0 <= v <= 1.0, "in [0, 1]"
    elif name == "repetition_penalty":
        ok, want = math.isfinite(v) and v > 0.0, "finite and > 0 (1 means off)"
    elif name in ("presence_penalty", "frequency_penalty"):
        ok, want = -MAX_ADDITIVE_PENALTY <= v <= MAX_ADDITIVE_PENALTY, "in [-2, 2]"
    else:
        raise KeyError(name)
    if not ok:
        raise ValueError(f"{name} = {value!r} is invalid: {name} must be {want}")
    return v


def check_int(name: str, value: object, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Checks one integer parameter (``top_k``, ``seed``, ``step``...) and returns it.

    Raises:
        TypeError: ``value`` is not an integer.
        ValueError: ``value`` is below ``minimum`` or above ``maximum``.

    >>> check_int("top_k", 50)
    50
    """
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)  # type: ignore[call-overload]
    if v < minimum or (maximum is not None and v > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} = {v} is invalid: {name} must be >= {minimum}{upper}")
    return v


#: Seeds, sequences and steps are 64-bit counters of the Philox generator.
MAX_U64 = 2**64 - 1


@dataclass
class SamplingParams:
    """How one request's tokens are drawn, and when its generation stops.

    The filters run in Hugging Face's order: penalties → temperature → top-k → top-p →
    min-p. Each one's neutral value switches it off.

    Attributes:
        temperature: Divides the logits; 0 means greedy decoding.
        top_k: Keep the ``top_k`` most likely tokens (and ties with the k-th); 0 = off.
        top_p: Keep the smallest set of most likely tokens with mass >= ``top_p``; 1 = off.
        min_p: Drop tokens less likely than ``min_p`` times the most likely one; 0 = off.
        repetition_penalty: Hugging Face's penalty on tokens already seen (> 0; 1 = off).
        presence_penalty: OpenAI's additive penalty on seen tokens, in [-2, 2].
        frequency_penalty: OpenAI's penalty per occurrence of a seen token, in [-2, 2].
        seed: Makes the request reproducible, whatever batch it runs in; None draws from
            the global generator (see ``gpt_hybrid.manual_seed``).
        max_new_tokens: The most tokens to generate.
        stop: Strings that end the generation (not included in the text).
        stop_token_ids: Token ids that end the generation.
        ignore_eos: Keep generating after the end-of-text token.
        num_return_sequences: Completions per prompt (each its own random stream).
        logprobs: Return the chosen token's logprob and this many alternatives; None = no.

    >>> p = SamplingParams(temperature=0.7, top_p=0.9, seed=1)
    >>> p.top_p
    0.9
    >>> SamplingParams(top_p=0.0)
    Traceback (most recent call last):
    ...
    ValueError: top_p = 0.0 is invalid: top_p must be in (0, 1]
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    max_new_tokens: int = 16
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    num_return_sequences: int = 1
    logprobs: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "temperature",
            "top_p",
            "min_p",
            "repetition_penalty",
            "presence_penalty",
            "frequency_penalty",
        ):
            setattr(self, name, check_float(name, getattr(self, name)))
        self.top_k = check_int("top_k", self.top_k)
        if self.seed is not None:
            self.seed = check_int("seed", self.seed, maximum=MAX_U64)
        self.max_new_tokens = check_int("max_new_tokens", self.max_new_tokens)
        self.num_return_sequences = check_int(
            "num_return_sequences", self.num_return_sequences, minimum=1
        )
        if self.logprobs is not None:
            self.logprobs = check_int("logprobs", self.logprobs)
        if not isinstance(self.ignore_eos, bool):
            raise TypeError(f"ignore_eos must be a bool, got {type(self.ignore_eos).__name__}")
        # A single stop string is a common slip for a list of one: accept it.
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        for s in stop:
            if not isinstance(s, str):
                raise TypeError(f"stop must hold strings, got {type(s).__name__}")
            if not s:
                raise ValueError("stop strings must not be empty")
        self.stop = stop
        self.stop_token_ids = [
            check_int("stop_token_ids", t, maximum=2**32 - 1) for t in self.stop_token_ids
        ]

    @property
    def greedy(self) -> bool:
        """Whether tokens are chosen by argmax (temperature 0).

        >>> SamplingParams(temperature=0).greedy
        True
        """
        return self.temperature == 0.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SamplingParams:
        """Builds parameters from a mapping (a JSON request, CLI options); unknown keys are errors.

        Raises:
            ValueError: a key is not a field of ``SamplingParams``, or a value is out of range.

        >>> SamplingParams.from_dict({"top_k": 40, "stop": ["\\n"]}).top_k
        40
        >>> SamplingParams.from_dict({"topk": 40})
        Traceback (most recent call last):
        ...
        ValueError: unknown sampling parameter(s): topk
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown sampling parameter(s): {', '.join(unknown)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-serialisable), the inverse of ``from_dict``.

        >>> SamplingParams(top_k=5).to_dict()["top_k"]
        5
        """
        return dataclasses.asdict(self)
