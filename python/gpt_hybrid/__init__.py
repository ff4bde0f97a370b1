"""gpt_hybrid: GPT-2 text generation from Python.

A Rust extension does the work that is slow in Python (byte-level BPE tokenization, batched
sampling, incremental detokenization, BPE training); PyTorch runs the GPT-2 transformer,
loaded from safetensors, inside a continuous-batching generation engine.

>>> import gpt_hybrid as gh
>>> gh.__version__
'0.1.0'
"""

from gpt_hybrid._native import __version__

# tokenizer
from gpt_hybrid.tokenizer import IncrementalDecoder, Tokenizer

# sampling: (names added by the sampler work)

# model: (names added by the model work)

# engine: (names added by the engine work)

# training
from gpt_hybrid.training import train_bpe

# integrations: imported lazily (gpt_hybrid.integrations.ray); not re-exported here

__all__ = [
    "__version__",
    # tokenizer
    "IncrementalDecoder",
    "Tokenizer",
    # sampling
    # model
    # engine
    # training
    "train_bpe",
]
