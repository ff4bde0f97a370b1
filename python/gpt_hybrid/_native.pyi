"""Type stubs for the native extension ``gpt_hybrid._native`` (private; use the package API)."""

from collections.abc import Sequence

import numpy as np

__version__: str

# --- tokenizer ---

class Encoding:
    """A byte-level BPE encoding: vocabulary, merges, split pattern, special tokens."""

    @staticmethod
    def from_files(vocab: str, merges: str, pattern: str = "gpt2") -> Encoding: ...
    @staticmethod
    def from_tokenizer_json(path: str) -> Encoding: ...
    @staticmethod
    def from_tiktoken(path: str, pattern: str, specials: list[tuple[str, int]]) -> Encoding: ...
    @staticmethod
    def from_ranks(
        ranks: list[tuple[bytes, int]], pattern: str, specials: list[tuple[str, int]]
    ) -> Encoding: ...
    def encode_ordinary(self, text: str) -> list[int]: ...
    def encode(self, text: str, allowed: set[str] | None) -> list[int]: ...
    def find_disallowed(self, text: str, disallowed: set[str] | None) -> str | None: ...
    def encode_batch(
        self,
        texts: list[str],
        allowed: set[str] | None,
        disallowed: set[str] | None,
        ordinary: bool,
        num_threads: int | None = None,
    ) -> list[list[int]]: ...
    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...
    def decode(self, ids: Sequence[int], strict: bool = False) -> str: ...
    def token_bytes(self, id: int) -> bytes: ...
    def encode_single_token(self, bytes: bytes) -> int: ...
    def incremental_decoder(self) -> IncrementalDecoder: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def pattern(self) -> str: ...
    @property
    def special_tokens(self) -> dict[str, int]: ...
    def mergeable_ranks(self) -> dict[bytes, int]: ...
    def pretokenize(self, text: str) -> list[str]: ...

class IncrementalDecoder:
    """Streams ids to text, one complete character at a time."""

    def push(self, ids: Sequence[int]) -> str: ...
    def flush(self) -> str: ...
    @property
    def pending(self) -> bytes: ...

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

def sample_scalar(
    logits: np.ndarray,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repetition_penalty: float,
    presence_penalty: float,
    frequency_penalty: float,
    seed: int,
    sequence: int,
    step: int,
    seeds: np.ndarray | None = None,
) -> np.ndarray:
    """One token per row, the same parameters for every row, no history; int64 ids [rows].

    ``seeds`` (uint64 [rows]), when given, replaces ``seed`` row by row.
    """

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

# --- attention ---

def decode_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    lengths: np.ndarray,
    scale: float,
    out: np.ndarray,
) -> None:
    """Writes into ``out`` [rows, heads, dim] the attention of ``q`` (same shape) over the first
    ``lengths[b]`` positions of cache slot ``b`` of ``k``/``v`` [slots, heads, max_len, dim];
    C-contiguous float32 (``lengths`` int64). ValueError for bad shapes or lengths."""

def decode_attention_step(
    qkv: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    lengths: np.ndarray,
    scale: float,
    out: np.ndarray,
) -> None:
    """One layer's decode step: writes row ``b``'s key and value (from ``qkv`` [rows, 3 * heads
    * dim], ``c_attn``'s output) into ``k``/``v`` [slots, heads, max_len, dim] at position
    ``lengths[b] - 1``, then writes into ``out`` [rows, heads * dim] the attention of its query
    over the first ``lengths[b]`` positions. C-contiguous float32 (``lengths`` int64).
    ValueError for bad shapes or lengths."""
