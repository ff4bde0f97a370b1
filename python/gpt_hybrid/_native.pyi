"""Type stubs for the native extension ``gpt_hybrid._native`` (private; use the package API)."""

__version__: str

# --- tokenizer ---

# --- sampler ---

# --- trainer ---
