"""gpt_hybrid: GPT-2 text generation from Python.

A Rust extension does the work that is slow in Python (byte-level BPE tokenization, batched
sampling, incremental detokenization, BPE training); PyTorch runs the GPT-2 transformer,
loaded from safetensors, inside a continuous-batching generation engine.

>>> import gpt_hybrid as gh
>>> gh.__version__
'0.1.0'
"""

from gpt_hybrid._native import __version__

# engine
from gpt_hybrid.engine import Completion, Engine
from gpt_hybrid.generator import Generator

# reliability (memory pressure)
from gpt_hybrid.memory import CacheMemoryError, CacheShrinkWarning

# model
from gpt_hybrid.model import GPT2, GPT2Config

# sampling
from gpt_hybrid.sampling import SampleOutput, manual_seed, probs, sample
from gpt_hybrid.sampling_params import SamplingParams

# tokenizer
from gpt_hybrid.tokenizer import IncrementalDecoder, Tokenizer

# training
from gpt_hybrid.training import train_bpe

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
