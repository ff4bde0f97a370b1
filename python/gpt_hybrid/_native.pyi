"""Type stubs for the native extension ``gpt_hybrid._native`` (private; use the package API)."""

__version__: str

# --- tokenizer ---

# --- sampler ---

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
