"""gpt_hybrid: GPT-2 text generation from Python.

A Rust extension does the work that is slow in Python (byte-level BPE tokenization, batched
sampling, incremental detokenization, BPE training); PyTorch runs the GPT-2 transformer,
loaded from safetensors, inside a continuous-batching generation engine.

>>> import gpt_hybrid as gh
>>> gh.__version__
'0.1.0'
"""

from typing import TYPE_CHECKING, Any

from gpt_hybrid._native import __version__

# sampling
from gpt_hybrid.sampling import SampleOutput, manual_seed, probs, sample
from gpt_hybrid.sampling_params import SamplingParams

# tokenizer
from gpt_hybrid.tokenizer import IncrementalDecoder, Tokenizer

# training
from gpt_hybrid.training import train_bpe

# The model, the engine and the memory checks need torch, whose import takes seconds and
# hundreds of MB: they load on first use (PEP 562), so tokenizer-only users never pay for it.
_LAZY = {
    # engine
    "Completion": "gpt_hybrid.engine",
    "Engine": "gpt_hybrid.engine",
    "Generator": "gpt_hybrid.generator",
    # reliability (memory pressure)
    "CacheMemoryError": "gpt_hybrid.memory",
    "CacheShrinkWarning": "gpt_hybrid.memory",
    # model
    "GPT2": "gpt_hybrid.model",
    "GPT2Config": "gpt_hybrid.model",
}

if TYPE_CHECKING:
    from gpt_hybrid.engine import Completion, Engine
    from gpt_hybrid.generator import Generator
    from gpt_hybrid.memory import CacheMemoryError, CacheShrinkWarning
    from gpt_hybrid.model import GPT2, GPT2Config


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gpt_hybrid' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# integrations: imported lazily (gpt_hybrid.integrations.ray); not re-exported here

__all__ = [
    "__version__",
    # tokenizer
    "IncrementalDecoder",
    "Tokenizer",
    # sampling
    "SampleOutput",
    "SamplingParams",
    "manual_seed",
    "probs",
    "sample",
    # model
    "GPT2",
    "GPT2Config",
    # engine
    "Completion",
    "Engine",
    "Generator",
    # training
    "train_bpe",
    # reliability (memory pressure)
    "CacheMemoryError",
    "CacheShrinkWarning",
]
