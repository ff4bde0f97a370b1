"""Type stubs for the native extension ``gpt_hybrid._native`` (private; use the package API)."""

import numpy as np

__version__: str

# --- tokenizer ---

# --- sampler ---

def sample_batch(
    logits: np.ndarray,
    float_params: np.ndarray,
    int_params: np.ndarray,
    history_ids: np.ndarray,
    history_offsets: np.ndarray,
    return_logprobs: bool,
    num_logprobs: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One token per row; (ids, logprobs, raw_logprobs, top_ids, top_logprobs)."""

def probs_batch(
    logits: np.ndarray,
    float_params: np.ndarray,
    int_params: np.ndarray,
    history_ids: np.ndarray,
    history_offsets: np.ndarray,
) -> np.ndarray:
    """The final filtered, renormalised distribution, float32 [rows, vocab]."""

def philox_uniform(seed: int, sequence: int, step: int) -> float:
    """One Philox4x32-10 uniform in [0, 1) for (seed, sequence, step)."""

# --- trainer ---

class BpeTrainer:
    """Counts words of texts and files, then learns byte-level BPE merges from the counts."""

    def __init__(
        self, pattern: str, special_tokens: list[str], num_threads: int | None = None
    ) -> None: ...
    def feed_texts(self, texts: list[str]) -> None: ...
    def feed_files(self, paths: list[str]) -> None: ...
    def __len__(self) -> int: ...
    def train(
        self, vocab_size: int, min_frequency: int
    ) -> tuple[list[bytes], list[tuple[int, int]]]: ...
