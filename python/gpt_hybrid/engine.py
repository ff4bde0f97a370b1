"""The continuous-batching generation engine.

Design, in the order a prompt meets it:

* **Slots and the KV cache.** The engine owns ``S`` slots. Keys and values live in one
  preallocated cache per run, ``k, v: [n_layer, S, n_head, T_max, head_dim]``, written in place
  by position; each slot's length (tokens cached) is kept explicitly. Running sequences always
  occupy slots ``0..n-1`` (a freed slot is refilled by the next waiting prompt at once, or the
  last running row is moved into it), so a decode step works on a plain prefix of the cache
  with no gather.
* **Prefill** (:meth:`Engine.prefill_many`) runs the prompts admitted together through the
  model, fills one slot each and returns the logits of their last positions. Prompts of
  similar length share a call (right-padded; the causal mask keeps padding out of every real
  position), so the weights are read once per call rather than once per prompt. Siblings
  (``num_return_sequences``) get a copy of their prompt's slot: one prefill per prompt,
  never one per sequence. With ``batch_invariant=True`` each prompt is prefilled alone, so its
  prefill never depends on what else is running.
* **Decode** (:meth:`Engine.decode_step`) feeds the newest token of every running row at that
  row's own position (a per-row attention mask covers rows of different lengths) and returns
  float32 logits ``[n, V]``.
* **Sampling** goes through the Rust sampler (:func:`gpt_hybrid.sample`) with per-row
  parameters. Its randomness is keyed by ``(seed, sequence, step)``: a seeded request draws the
  same numbers whatever else is in the batch. Requests without a seed get a random one.
* **Stopping.** After each token: EOS (unless ``ignore_eos``), a stop token id, the length
  limit (``max_new_tokens`` or the context window), or a stop string. Stop strings are searched
  in the text of the incremental detokenizer, and the text is cut before the match; a stream
  holds back any tail that could still become a stop string, so none ever leaks out. The
  sampled ids stay complete in ``token_ids``; the EOS/stop token's text is not in ``text``.
* **Continuous batching.** A finished row frees its slot at the end of the step and the next
  waiting prompt is admitted into it before the next step: the batch never waits for its
  longest member.
* **Batch invariance.** A seeded request's tokens should not depend on what else runs. Row
  ``b`` of every elementwise op, LayerNorm and the sampler is computed independently of the
  other rows; two things are not, measured here in fp32 on the CPU
  (``bench/bench_batch_invariance.py``, table in ``docs/benchmarks.md``):

  - MKL's fp32 GEMM: a row's result depends on the batch height M, with three regimes
    (M = 1, M = 2-3, M >= 4; bit-identical within M >= 4 up to at least 64);
  - attention over a padded batch: one masked call over the longest row changes the shape,
    hence the summation order, of every row's softmax and ``probs @ V``.

  Both change logits by ~2e-6 (measured), too little to move a sampled token except at a
  near-tie (none in the tests: a seeded request alone vs among 15, fp32), so by default the
  engine takes the fast path. ``Engine(batch_invariant=True)`` makes a row's
  logits bit-identical alone and among 15 others (tested): decode runs on at least 4 rows
  (padding with idle slots) and each row attends over exactly its own length.
"""

from __future__ import annotations

import math
import mmap
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gpt_hybrid import memory
from gpt_hybrid.linear import pack_model
from gpt_hybrid.model import GPT2, native_decode_attention
from gpt_hybrid.pages import discard_pages

# MKL's fp32 GEMM computes a row the same way for every batch height M >= 4 (measured).
_INVARIANT_MIN_ROWS = 4

# Padded tokens per batched prefill call: past a few hundred rows a GEMM runs at its peak,
# and the activations stay small (a single prompt can still be longer).
_PREFILL_TOKENS = 1024

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


@dataclass
class Completion:
    """One generated sequence.

    Attributes:
        text: the generated text (no prompt; cut before a stop string; without the EOS text).
        token_ids: the generated ids, including a final EOS or stop token id.
        finish_reason: "stop" (EOS, stop token id or stop string) or "length".
        logprobs: log-probability of each generated token, when asked for (``logprobs=0|k``).
        prompt_token_ids: the prompt, as the model saw it.
        top_logprobs: the ``k`` most likely tokens at each step (``{id: logprob}``), when
            ``logprobs=k`` with ``k > 0``.
        index: which of the ``num_return_sequences`` of its prompt this is.

    Example:
        >>> Completion("hi", [5303], "length").finish_reason
        'length'
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[float] | None = None
    prompt_token_ids: list[int] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] | None = None
    index: int = 0


@dataclass
class StreamEvent:
    """A piece of output from :meth:`Engine.run`: new text of one sequence, maybe its end.

    Attributes:
        request: index of the prompt in the submitted list.
        index: which of that prompt's ``num_return_sequences``.
        text: text that became final since the last event of this sequence (may be "").
        completion: set on the last event of the sequence.
    """

    request: int
    index: int
    text: str
    completion: Completion | None = None


class KVCache:
    """Preallocated keys/values ``[n_layer, slots, n_head, max_len, head_dim]``.

    Zero-filled by default (never garbage: torch's attention multiplies a masked-out entry by
    0, and 0 * NaN is NaN). Filling it touches every page (a 1.2 GB cache is resident at
    once), so the whole cache is taken when the run starts: that is what the engine checks
    against the available memory before making it.

    ``zero=False`` (float32 on the CPU, where decode attention runs in the native kernel,
    which never reads a position past a row's length) takes fresh anonymous pages instead,
    which the kernel zero-fills when each is first touched: a page becomes resident when a
    sequence first reaches it (the mixed benchmark's peak RSS: 2641 -> 2420 MB), and a run
    does not start with a memset of the whole cache (70 ms for 32 rows of 96 positions). The
    engine still plans memory for the whole cache.

    Example:
        >>> from gpt_hybrid.model import GPT2Config
        >>> cache = KVCache(GPT2Config(n_layer=2, n_head=2, n_embd=8), 4, 16)
        >>> tuple(cache.k.shape)
        (2, 4, 2, 16, 4)
    """

    def __init__(
        self,
        config: Any,
        slots: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        zero: bool = True,
    ) -> None:
        shape = (config.n_layer, slots, config.n_head, max_len, config.head_dim)
        self.lazy = not zero and torch.device(device).type == "cpu" and dtype == torch.float32
        with torch.inference_mode():
            if self.lazy:
                self.k, self.v = _lazy_zeros(shape), _lazy_zeros(shape)
            else:
                self.k = torch.zeros(shape, dtype=dtype, device=device)
                self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.lengths = np.zeros(slots, dtype=np.int64)

    @property
    def max_len(self) -> int:
        """Positions per slot."""
        return self.k.shape[3]

    def free_slot(self, slot: int) -> None:
        """Marks ``slot`` empty; in a lazy cache (``zero=False``) its pages are also given
        back to the kernel, so that the next sequence there makes resident only what it
        writes (the mixed benchmark's peak RSS: 2268 -> 1890 MB, at the same speed)."""
        self.lengths[slot] = 0
        if not self.lazy:
            return
        layers, slots = self.k.shape[0], self.k.shape[1]
        per_slot = self.k[0, 0].numel() * self.k.element_size()
        for t in (self.k, self.v):
            for layer in range(layers):
                discard_pages(t.data_ptr() + (layer * slots + slot) * per_slot, per_slot)

    @torch.inference_mode()
    def copy_slot(self, src: int, dst: int) -> None:
        """Copies slot ``src``'s cached positions into slot ``dst``."""
        n = int(self.lengths[src])
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]
        self.lengths[dst] = n


def _lazy_zeros(shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 CPU tensor on fresh anonymous pages: zeros, resident only once written.

    Not from torch's allocator or numpy's, which both put large buffers on 2 MB pages
    (torch with THP_MEM_ALLOC_ENABLE, see gpt_hybrid.linear; numpy always): then writing a
    slot's first position would make 2 MB resident (measured: the mixed benchmark's peak
    RSS 2414 -> 2634 MB).
    """
    n = math.prod(shape)
    # Anonymous and private (a forked child gets a copy-on-write view, as with malloc), and
    # zero-filled by the kernel.
    buf = mmap.mmap(-1, max(4 * n, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return torch.from_numpy(np.frombuffer(buf, np.float32, count=n).reshape(shape))


@dataclass
class _Request:
    """A prompt and its settings, as submitted."""

    index: int
    prompt: list[int]
    params: Any  # SamplingParams
    seed: int
    pending: deque[int]  # sibling indices not yet admitted


@dataclass
class _Sequence:
    """The state of one running sequence."""

    request: _Request
    index: int
    decoder: Any
    max_new: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)
    text: str = ""
    emitted: int = 0  # characters of text already streamed
    finish_reason: str | None = None
    cut: bool = False  # text was cut at a stop string


def want_logprobs(out: Any) -> bool:
    """Whether a sampler result is a ``SampleOutput`` (logprobs asked for) or bare ids."""
    return not isinstance(out, np.ndarray)


def _cut_at_stop(seq: _Sequence, stops: Sequence[str]) -> bool:
    """Cuts ``seq.text`` before the first stop string in it; says whether one was found."""
    # Only the tail can hold a new match: the text before it was checked at earlier steps.
    start = max(0, seq.emitted - max(len(s) for s in stops))
    hits = [i for s in stops if (i := seq.text.find(s, start)) >= 0]
    if not hits:
        return False
    seq.text = seq.text[: min(hits)]
    seq.cut = True
    return True


def _stop_holdback(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class Engine:
    """Runs many prompts through a :class:`GPT2` with continuous batching.

    Args:
        model: the model (eval mode; any dtype/device).
        tokenizer: a :class:`gpt_hybrid.Tokenizer` (for incremental detokenization).
        max_batch_size: the number of slots, i.e. rows decoded together.
        eos_token_id: the end-of-sequence id (default: the config's, else the tokenizer's).
        batch_invariant: make a row's logits bit-identical whatever else runs (see above):
            attention row by row over each row's own length, and decode on at least
            ``min_decode_rows`` (default 4) rows. Off by default: it costs about 2x at batch 1
            (MKL's M = 4 kernel against its matrix-vector one), and off it logits differ by
            ~2e-6 only, which moves a sampled token only at a near-tie.
        min_decode_rows: pad a decode step to at least this many rows.
        strict_memory: when a run's KV cache would not fit in the available memory, raise
            :class:`gpt_hybrid.memory.CacheMemoryError` (before allocating anything) instead
            of running it with fewer slots and a :class:`~gpt_hybrid.memory.CacheShrinkWarning`.
        memory_utilization: the fraction of the available memory a run's cache may take.

    Example:
        >>> engine = Engine(model, tokenizer, max_batch_size=16)  # doctest: +SKIP
        >>> out = engine.generate([[464, 2068]], SamplingParams(max_new_tokens=3))  # doctest: +SKIP
        >>> out[0][0].text  # doctest: +SKIP
        ' man who was'
    """

    def __init__(
        self,
        model: GPT2,
        tokenizer: Any,
        *,
        max_batch_size: int = 32,
        eos_token_id: int | None = None,
        batch_invariant: bool = False,
        min_decode_rows: int | None = None,
        strict_memory: bool = False,
        memory_utilization: float = 0.9,
    ) -> None:
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive int, got {max_batch_size!r}")
        self.model = model.eval()
        # Float32 or bfloat16 on the CPU: oneDNN's blocked weights (linear.pack_model) make
        # batch-1 decode ~1.3-1.5x faster and the LM head at 32 rows ~1.4x; the checkpoint's
        # pages are released where the weights are mapped from it (float32 checkpoints).
        pack_model(model)
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.batch_invariant = batch_invariant
        if min_decode_rows is None:
            min_decode_rows = _INVARIANT_MIN_ROWS if batch_invariant else 1
        self.min_decode_rows = min_decode_rows
        if eos_token_id is None:
            eos_token_id = model.config.eos_token_id
        if eos_token_id is None and tokenizer is not None:
            eos_token_id = tokenizer.eot_token
        self.eos_token_id = eos_token_id
        if not 0.0 < memory_utilization <= 1.0:
            raise ValueError(f"memory_utilization must be in (0, 1], got {memory_utilization!r}")
        self.strict_memory = strict_memory
        self.memory_utilization = memory_utilization

    # --- the two model passes ---

    @torch.inference_mode()
    def prefill(self, cache: KVCache, prompt: list[int], slot: int) -> torch.Tensor:
        """Runs ``prompt`` into cache slot ``slot``; returns float32 logits ``[V]`` of its end."""
        ids = torch.tensor([prompt], device=self.model.device)
        n = len(prompt)
        logits = self.model.prefill(
            ids,
            torch.tensor([n], device=ids.device),
            cache.k,
            cache.v,
            torch.tensor([slot], device=ids.device),
        )
        cache.lengths[slot] = n
        return logits[0]

    @torch.inference_mode()
    def prefill_many(self, cache: KVCache, items: list[tuple[list[int], int]]) -> torch.Tensor:
        """Prefills ``(prompt, slot)`` pairs; returns float32 logits ``[len(items), V]``.

        Prompts of similar length run together, right-padded, in calls of at most
        ``_PREFILL_TOKENS`` padded tokens with at most a quarter of them padding: one GEMM over
        many rows instead of one per prompt, which reads the weights once per call. With
        ``batch_invariant`` every prompt runs alone (a GEMM's rows depend on its height).
        """
        out: list[torch.Tensor | None] = [None] * len(items)
        for group in self._prefill_groups([len(p) for p, _ in items]):
            if len(group) == 1:
                prompt, slot = items[group[0]]
                out[group[0]] = self.prefill(cache, prompt, slot)
                continue
            width = max(len(items[i][0]) for i in group)
            ids = torch.zeros((len(group), width), dtype=torch.long)
            for r, i in enumerate(group):
                ids[r, : len(items[i][0])] = torch.tensor(items[i][0])
            lengths = [len(items[i][0]) for i in group]
            slot_ids = [items[i][1] for i in group]
            device = self.model.device
            logits = self.model.prefill(
                ids.to(device),
                torch.tensor(lengths, device=device),
                cache.k,
                cache.v,
                torch.tensor(slot_ids, device=device),
            )
            for r, i in enumerate(group):
                cache.lengths[slot_ids[r]] = lengths[r]
                out[i] = logits[r]
        return torch.stack(out)  # type: ignore[arg-type]

    def _prefill_groups(self, lengths: list[int]) -> list[list[int]]:
        """Indices of ``lengths`` in prefill calls: by length, padding-bounded, token-capped."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        if self.batch_invariant:
            return [[i] for i in order]
        groups: list[list[int]] = []
        cur: list[int] = []
        real = 0
        for i in order:
            n = lengths[i]  # the longest so far: the group's width if i joins
            padded = (len(cur) + 1) * n
            if cur and (padded > _PREFILL_TOKENS or padded > 1.25 * (real + n)):
                groups.append(cur)
                cur, real = [], 0
            cur.append(i)
            real += n
        if cur:
            groups.append(cur)
        return groups

    @torch.inference_mode()
    def decode_step(self, cache: KVCache, tokens: np.ndarray, rows: int) -> torch.Tensor:
        """Feeds ``tokens[b]`` to slot ``b`` for ``b < rows``; returns float32 logits ``[rows, V]``.

        Each row's token goes at position ``cache.lengths[b]``, which then grows by one.
        """
        run = max(rows, min(self.min_decode_rows, cache.k.shape[1]))
        # Padding rows (idle slots) write position 0 of their slot; a later prefill overwrites it.
        toks = np.zeros(run, dtype=np.int64)
        toks[:rows] = tokens[:rows]
        pos = np.zeros(run, dtype=np.int64)
        pos[:rows] = cache.lengths[:rows]
        device = self.model.device
        logits = self.model.decode(
            torch.from_numpy(toks).to(device),
            torch.from_numpy(pos).to(device),
            cache.k,
            cache.v,
            batch_invariant=self.batch_invariant,
        )
        cache.lengths[:rows] += 1
        return logits[:rows]

    # --- the scheduler ---

    def generate(self, prompts: Sequence[list[int]], params: Any) -> list[list[Completion]]:
        """Generates for tokenized prompts; returns, per prompt, its ``num_return_sequences``.

        Args:
            prompts: token ids, one list per prompt.
            params: one :class:`gpt_hybrid.SamplingParams` for all, or one per prompt.
        """
        out: list[list[Completion | None]] = [[] for _ in prompts]
        for req_params, slot_list in zip(self._params_list(prompts, params), out, strict=True):
            slot_list.extend([None] * req_params.num_return_sequences)
        for event in self.run(prompts, params):
            if event.completion is not None:
                out[event.request][event.index] = event.completion
        return [[c for c in row if c is not None] for row in out]

    def _params_list(self, prompts: Sequence[list[int]], params: Any) -> list[Any]:
        if isinstance(params, (list, tuple)):
            if len(params) != len(prompts):
                raise ValueError(
                    f"params: got {len(params)} SamplingParams for {len(prompts)} prompts"
                )
            return list(params)
        return [params] * len(prompts)

    def run(self, prompts: Sequence[list[int]], params: Any) -> Iterator[StreamEvent]:
        """The scheduler loop: yields text as it becomes final, and each completion at its end.

        Example:
            >>> for ev in engine.run([[464]], SamplingParams(max_new_tokens=3)):  # doctest: +SKIP
            ...     print(ev.text, end="")
        """
        params_list = self._params_list(prompts, params)
        n_ctx = self.model.config.n_positions
        from gpt_hybrid.sampling import _seeds  # the stream gpt_hybrid.manual_seed resets

        requests = []
        for i, (prompt, p) in enumerate(zip(prompts, params_list, strict=True)):
            prompt = [int(t) for t in prompt]
            if not prompt:
                raise ValueError(f"prompt {i} is empty: at least one token is needed")
            if len(prompt) >= n_ctx:
                raise ValueError(
                    f"prompt {i} has {len(prompt)} tokens; the context window is {n_ctx} "
                    "(leaving no room for a new token); pass truncation=True to keep its end"
                )
            if p.max_new_tokens < 0:
                raise ValueError(f"max_new_tokens must be >= 0, got {p.max_new_tokens}")
            # One seed per request, drawn now: its sequences keep one random stream each.
            seed = p.seed if p.seed is not None else int(_seeds.draw(1)[0])
            pending = deque(range(p.num_return_sequences))
            requests.append(_Request(i, prompt, p, seed, pending))
        return self._run(requests)

    def _run(self, requests: list[_Request]) -> Iterator[StreamEvent]:
        n_ctx = self.model.config.n_positions
        for r in requests:
            if r.params.max_new_tokens == 0:  # nothing to generate: no prefill either
                for j in r.pending:
                    done = Completion("", [], FINISH_LENGTH, None, r.prompt, None, j)
                    yield StreamEvent(r.index, j, "", done)
        requests = [r for r in requests if r.params.max_new_tokens > 0]
        if not requests:
            return
        total_seqs = sum(r.params.num_return_sequences for r in requests)
        slots = min(self.max_batch_size, total_seqs)
        max_len = max(min(len(r.prompt) + r.params.max_new_tokens, n_ctx) for r in requests)
        min_rows = min(self.min_decode_rows, self.max_batch_size)
        # The cache is the run's one big allocation: check it fits before making it, so that a
        # batch too large for the machine shrinks (or fails) here, never dies mid-run.
        need = memory.RunMemory.estimate(
            self.model.config,
            max_len,
            self.model.dtype,
            max(len(r.prompt) for r in requests),
            prefill_tokens=_PREFILL_TOKENS,
        )
        slots = memory.plan_slots(
            need,
            slots,
            min_rows,
            memory.available_bytes(self.model.device),
            strict=self.strict_memory,
            utilization=self.memory_utilization,
            what=f"{slots} slots of up to {max_len} tokens",
        )
        # One cache per run, sized for it (a run holds it only while it lasts).
        cache = KVCache(
            self.model.config,
            max(slots, min_rows),
            max_len,
            self.model.dtype,
            self.model.device,
            zero=not native_decode_attention(self.model.dtype, self.model.device),
        )
        yield from self._loop(cache, deque(requests), slots)

    def _loop(
        self, cache: KVCache, waiting: deque[_Request], n_slots: int
    ) -> Iterator[StreamEvent]:
        from gpt_hybrid.sampling import sample  # the Rust sampler's Python wrapper

        slots: list[_Sequence | None] = [None] * n_slots  # slots[b] runs in cache row b
        tokens = np.zeros(n_slots, dtype=np.int64)  # the newest token of each slot
        while True:
            # Admit waiting prompts into free slots, lowest first (holes left by finished rows),
            # prefill them together, and sample their first tokens in one call.
            free = [b for b, s in enumerate(slots) if s is None]
            while waiting and free:
                admitted: list[tuple[_Request, list[int]]] = []
                while waiting and free:
                    req = waiting[0]
                    take, free = free[: len(req.pending)], free[len(req.pending) :]
                    for b in take:
                        slots[b] = self._new_sequence(req, req.pending.popleft())
                    admitted.append((req, take))
                    if not req.pending:
                        waiting.popleft()
                logits = self.prefill_many(cache, [(r.prompt, take[0]) for r, take in admitted])
                rows: list[int] = []
                row_logits = []
                for i, (_, take) in enumerate(admitted):
                    for b in take[1:]:
                        cache.copy_slot(take[0], b)  # siblings share the prefill
                    rows += take
                    row_logits.append(logits[i].expand(len(take), -1))
                ids = self._sample(sample, torch.cat(row_logits), [slots[b] for b in rows])
                yield from self._accept(slots, rows, ids, tokens)
                free = sorted(free + _release_finished(cache, slots, rows))
            n = _compact(cache, slots, tokens)
            if n == 0:
                if waiting:
                    continue
                return
            logits = self.decode_step(cache, tokens, n)
            rows = list(range(n))
            ids = self._sample(sample, logits, slots[:n])
            yield from self._accept(slots, rows, ids, tokens)
            _release_finished(cache, slots, rows)

    def _new_sequence(self, req: _Request, index: int) -> _Sequence:
        n_ctx = self.model.config.n_positions
        max_new = min(req.params.max_new_tokens, n_ctx - len(req.prompt))
        return _Sequence(req, index, self.tokenizer.incremental_decoder(), max_new)

    def _sample(self, sample: Any, logits: torch.Tensor, seqs: list[_Sequence]) -> Any:
        """One sampler call for ``seqs`` (row b of ``logits`` belongs to ``seqs[b]``)."""
        ps = [s.request.params for s in seqs]
        want_lp = any(p.logprobs is not None for p in ps)
        penalised = any(
            p.repetition_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0
            for p in ps
        )
        # Plain lists: when every row shares one SamplingParams, the sampler checks each value once.
        return sample(
            np.ascontiguousarray(logits.float().cpu().numpy()),
            temperature=[p.temperature for p in ps],
            top_k=[p.top_k for p in ps],
            top_p=[p.top_p for p in ps],
            min_p=[p.min_p for p in ps],
            repetition_penalty=[p.repetition_penalty for p in ps],
            presence_penalty=[p.presence_penalty for p in ps],
            frequency_penalty=[p.frequency_penalty for p in ps],
            seed=[s.request.seed for s in seqs],
            step=[len(s.token_ids) for s in seqs],
            sequence=[s.index for s in seqs],
            history=[s.request.prompt + s.token_ids for s in seqs] if penalised else None,
            return_logprobs=want_lp,
            num_logprobs=max((p.logprobs or 0) for p in ps) if want_lp else 0,
        )

    def _accept(
        self, slots: list[_Sequence | None], rows: list[int], out: Any, tokens: np.ndarray
    ) -> Iterator[StreamEvent]:
        """Appends each row's new token, applies the stop rules, yields new text."""
        ids = out.token_ids if want_logprobs(out) else out
        for i, b in enumerate(rows):
            seq = slots[b]
            assert seq is not None
            tok = int(ids[i])
            tokens[b] = tok
            p = seq.request.params
            seq.token_ids.append(tok)
            if p.logprobs is not None:
                # The model's own distribution (vLLM's meaning), not the filtered one.
                seq.logprobs.append(float(out.raw_logprobs[i]))
                if p.logprobs > 0:
                    k = p.logprobs
                    top = zip(out.top_token_ids[i][:k], out.top_logprobs[i][:k], strict=True)
                    seq.top_logprobs.append({int(t): float(v) for t, v in top})
            if (tok == self.eos_token_id and not p.ignore_eos) or tok in p.stop_token_ids:
                seq.finish_reason = FINISH_STOP  # this token's text is not part of the output
            else:
                seq.text += seq.decoder.push([tok])
                if p.stop and _cut_at_stop(seq, p.stop):
                    seq.finish_reason = FINISH_STOP
                elif len(seq.token_ids) >= seq.max_new:
                    seq.finish_reason = FINISH_LENGTH
            if seq.finish_reason is not None and not seq.cut:
                # Bytes of an incomplete character at the end: decoded as U+FFFD, like decode().
                seq.text += seq.decoder.flush()
                if p.stop:
                    _cut_at_stop(seq, p.stop)
            yield from self._emit(seq)

    def _emit(self, seq: _Sequence) -> Iterator[StreamEvent]:
        p = seq.request.params
        done = seq.finish_reason is not None
        end = len(seq.text) if done else len(seq.text) - _stop_holdback(seq.text, p.stop or ())
        new = seq.text[seq.emitted : end]
        seq.emitted = max(seq.emitted, end)
        if not done and not new:
            return
        completion = None
        if done:
            completion = Completion(
                text=seq.text,
                token_ids=seq.token_ids,
                finish_reason=seq.finish_reason,
                logprobs=seq.logprobs if p.logprobs is not None else None,
                prompt_token_ids=seq.request.prompt,
                top_logprobs=seq.top_logprobs if p.logprobs else None,
                index=seq.index,
            )
        yield StreamEvent(seq.request.index, seq.index, new, completion)


def _release_finished(cache: KVCache, slots: list[_Sequence | None], rows: list[int]) -> list[int]:
    """Frees the slots of finished sequences among ``rows``; returns them."""
    freed = []
    for b in rows:
        seq = slots[b]
        if seq is not None and seq.finish_reason is not None:
            slots[b] = None
            cache.free_slot(b)
            freed.append(b)
    return freed


def _compact(cache: KVCache, slots: list[_Sequence | None], tokens: np.ndarray) -> int:
    """Moves the highest running rows into lower free slots; returns the running count.

    Only needed once no prompt is waiting (otherwise a new prompt fills each hole); it keeps
    decode working on a prefix ``0..n-1`` of the cache.
    """
    lo, hi = 0, len(slots) - 1
    while True:
        while lo < len(slots) and slots[lo] is not None:
            lo += 1
        while hi >= 0 and slots[hi] is None:
            hi -= 1
        if lo > hi:
            return lo
        cache.copy_slot(hi, lo)
        cache.free_slot(hi)
        tokens[lo] = tokens[hi]
        slots[lo], slots[hi] = slots[hi], None
