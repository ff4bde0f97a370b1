"""The generation engine and Generator against a slow reference and against HF generate."""

from __future__ import annotations

from pathlib import Path

import gpt_hybrid.generator as generator_module
import pytest
import torch
from _engine_util import (
    make_hf_checkpoint,
    one_torch_thread,  # noqa: F401  (an autouse fixture)
    reference_generate,
)
from gpt_hybrid.engine import Engine
from gpt_hybrid.generator import Generator
from gpt_hybrid.sampling_params import SamplingParams

TEXTS = [
    "The quick brown fox",
    "It was the best of times, it was the worst of times, it was the age of wisdom,",
    "Hello",
    "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer",
    "日本語のテキストと emoji 🎉 mixed in",
    "A",
    "def main():\n    print('hi')\n",
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, gpt2_files) -> Path:
    """A tiny random GPT-2 with GPT-2's real vocabulary and tokenizer files beside it."""
    return make_hf_checkpoint(
        tmp_path_factory.mktemp("engine"),
        tokenizer_files=gpt2_files,
        seed=7,
        logit_scale=8.0,
        tie_word_embeddings=False,  # an lm_head of its own: varied text, no echo of the input
        vocab_size=50257,
        n_positions=96,
        n_layer=2,
    )


@pytest.fixture(scope="module")
def llm(ckpt) -> Generator:
    return Generator.from_pretrained(ckpt, max_batch_size=3)


def greedy(**kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, **kw)


def test_engine_matches_reference_greedy_with_continuous_batching(llm):
    """7 prompts, 3 slots, different lengths: each equals the no-cache one-row reference."""
    ids = [llm.tokenizer.encode(t) for t in TEXTS]
    params = [greedy(max_new_tokens=n, ignore_eos=True) for n in (12, 3, 20, 1, 7, 15, 9)]
    out = llm.engine.generate(ids, params)
    for prompt, p, (c,) in zip(ids, params, out, strict=True):
        want = reference_generate(llm.model, prompt, p.max_new_tokens)
        assert c.token_ids == want
        assert c.finish_reason == "length"
        assert c.prompt_token_ids == prompt
        assert c.text == llm.tokenizer.decode(want)


def test_engine_matches_hf_generate(llm, ckpt):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(ckpt).eval()
    out = llm.generate(TEXTS[:4], temperature=0.0, max_new_tokens=10, ignore_eos=True)
    for text, c in zip(TEXTS[:4], out, strict=True):
        ids = torch.tensor([llm.tokenizer.encode(text)])
        with torch.no_grad():
            want = hf.generate(
                ids, do_sample=False, max_new_tokens=10, eos_token_id=None, pad_token_id=0
            )
        assert c.token_ids == want[0, ids.shape[1] :].tolist()


def test_finished_rows_free_their_slot_at_once(llm, monkeypatch):
    """2 slots, one long and four short requests: the short ones cycle through one slot."""
    steps = []
    original = Engine.decode_step

    def counting(self, cache, tokens, rows):
        steps.append(rows)
        return original(self, cache, tokens, rows)

    monkeypatch.setattr(Engine, "decode_step", counting)
    engine = Engine(llm.model, llm.tokenizer, max_batch_size=2)
    lengths = [10, 2, 2, 2, 2]
    out = engine.generate(
        [[464 + i] for i in range(5)], [greedy(max_new_tokens=n, ignore_eos=True) for n in lengths]
    )
    assert [len(c.token_ids) for (c,) in out] == lengths
    # The long request needs 9 decode steps; the others all fit beside it. A static batch
    # of 2 would take 9 + 1 + 1 steps.
    assert len(steps) == 9
    assert steps[:4] == [2, 2, 2, 2] and steps[4:] == [1] * 5


def test_stop_strings_cut_the_text_and_never_leak(llm):
    base = llm.generate(TEXTS[0], max_new_tokens=40, seed=3, top_k=50, ignore_eos=True)[0]
    text = base.text
    assert len(text) > 30
    stop = text[12:15]
    cut = text.index(stop)
    got = llm.generate(TEXTS[0], max_new_tokens=40, seed=3, top_k=50, ignore_eos=True, stop=[stop])
    (c,) = got
    assert c.finish_reason == "stop"
    assert c.text == text[:cut]
    assert c.token_ids == base.token_ids[: len(c.token_ids)]
    assert stop in llm.tokenizer.decode(c.token_ids)  # the ids that made the stop string stay
    pieces = list(
        llm.stream(TEXTS[0], max_new_tokens=40, seed=3, top_k=50, ignore_eos=True, stop=[stop])
    )
    assert "".join(pieces) == text[:cut]
    # Several stop strings: the earliest match wins.
    later = text[20:24]
    (c2,) = llm.generate(
        TEXTS[0], max_new_tokens=40, seed=3, top_k=50, ignore_eos=True, stop=[later, stop]
    )
    assert c2.text == text[: min(cut, text.index(later))]


def test_stop_token_ids_and_eos(llm):
    base = llm.generate(TEXTS[1], max_new_tokens=30, seed=5, ignore_eos=True)[0]
    stop_id = base.token_ids[6]
    k = base.token_ids.index(stop_id)
    (c,) = llm.generate(TEXTS[1], max_new_tokens=30, seed=5, stop_token_ids=[stop_id])
    assert c.finish_reason == "stop"
    assert c.token_ids == base.token_ids[: k + 1]
    assert c.text == llm.tokenizer.decode(base.token_ids[:k])

    engine = Engine(llm.model, llm.tokenizer, eos_token_id=stop_id)
    p = SamplingParams(max_new_tokens=30, seed=5)
    (c,) = engine.generate([llm.tokenizer.encode(TEXTS[1])], p)[0]
    assert c.token_ids == base.token_ids[: k + 1] and c.finish_reason == "stop"
    (c,) = engine.generate(
        [llm.tokenizer.encode(TEXTS[1])], SamplingParams(max_new_tokens=30, seed=5, ignore_eos=True)
    )[0]
    assert c.token_ids == base.token_ids and c.finish_reason == "length"


@pytest.mark.parametrize("invariant", [False, True])
def test_seeded_request_is_batch_invariant_fp32(llm, invariant):
    """Alone, or among 15 other requests (any position), a seeded request's tokens are the same."""
    p = SamplingParams(max_new_tokens=24, seed=1234, top_k=50, top_p=0.95, ignore_eos=True)
    alone_engine = Engine(llm.model, llm.tokenizer, batch_invariant=invariant)
    alone = alone_engine.generate([llm.tokenizer.encode(TEXTS[3])], p)[0][0]
    others = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(15)]
    engine = Engine(llm.model, llm.tokenizer, max_batch_size=16, batch_invariant=invariant)
    for where in (0, 7, 15):
        prompts = others[:where] + [TEXTS[3]] + others[where:]
        params = [
            SamplingParams(max_new_tokens=5 + 3 * i, seed=i, temperature=0.8, ignore_eos=True)
            for i in range(16)
        ]
        params[where] = p
        ids = [llm.tokenizer.encode(t) for t in prompts]
        got = engine.generate(ids, params)[where][0]
        assert got.token_ids == alone.token_ids


def test_seeds_reproduce_and_differ(llm):
    a = llm.generate(TEXTS[0], max_new_tokens=20, seed=1, ignore_eos=True)[0]
    b = llm.generate(TEXTS[0], max_new_tokens=20, seed=1, ignore_eos=True)[0]
    c = llm.generate(TEXTS[0], max_new_tokens=20, seed=2, ignore_eos=True)[0]
    assert a.token_ids == b.token_ids != c.token_ids


def test_num_return_sequences_share_one_prefill(llm, monkeypatch):
    calls = []
    original = Engine.prefill

    def counting(self, cache, prompt, slot):
        calls.append(len(prompt))
        return original(self, cache, prompt, slot)

    monkeypatch.setattr(Engine, "prefill", counting)
    out = llm.generate(
        [TEXTS[1], TEXTS[0]], max_new_tokens=8, seed=9, num_return_sequences=3, ignore_eos=True
    )
    # 3 slots: the first prompt's 3 sequences share one prefill; the second prompt's too.
    assert calls == [len(llm.tokenizer.encode(TEXTS[1])), len(llm.tokenizer.encode(TEXTS[0]))]
    assert [c.index for c in out] == [0, 1, 2, 0, 1, 2]
    assert len({tuple(c.token_ids) for c in out[:3]}) == 3
    again = llm.generate(
        [TEXTS[1], TEXTS[0]], max_new_tokens=8, seed=9, num_return_sequences=3, ignore_eos=True
    )
    assert [c.token_ids for c in again] == [c.token_ids for c in out]


def test_logprobs_greedy_are_the_models(llm):
    prompt = llm.tokenizer.encode(TEXTS[2])
    (c,) = llm.generate(prompt, temperature=0.0, max_new_tokens=6, logprobs=2, ignore_eos=True)
    assert len(c.logprobs) == len(c.top_logprobs) == 6
    ids = list(prompt)
    with torch.no_grad():
        for tok, lp, top in zip(c.token_ids, c.logprobs, c.top_logprobs, strict=True):
            ref = torch.log_softmax(llm.model(torch.tensor([ids]))[0, -1], -1)
            assert abs(lp - ref[tok].item()) < 1e-4
            assert len(top) == 2 and max(top, key=top.get) == tok
            ids.append(tok)
    (plain,) = llm.generate(prompt, temperature=0.0, max_new_tokens=6)
    assert plain.logprobs is None


def test_stream_equals_generate(llm):
    kw = dict(max_new_tokens=30, seed=11, ignore_eos=True)
    pieces = list(llm.stream(TEXTS[4], **kw))
    assert len(pieces) > 1
    assert "".join(pieces) == llm.generate(TEXTS[4], **kw)[0].text


def test_prompt_forms_and_bad_input(llm):
    ids = llm.tokenizer.encode(TEXTS[0])
    as_text = llm.generate(TEXTS[0], temperature=0.0, max_new_tokens=5)
    as_ids = llm.generate(ids, temperature=0.0, max_new_tokens=5)
    both = llm.generate([TEXTS[0], ids], temperature=0.0, max_new_tokens=5)
    assert as_text[0].token_ids == as_ids[0].token_ids == both[0].token_ids == both[1].token_ids
    assert llm.generate([], max_new_tokens=5) == []
    (z,) = llm.generate(TEXTS[0], max_new_tokens=0)
    assert z.token_ids == [] and z.text == "" and z.finish_reason == "length"

    long = [464] * 96
    with pytest.raises(ValueError, match="context window is 96"):
        llm.generate(long, max_new_tokens=5)
    (t,) = llm.generate(long, max_new_tokens=5, truncation=True, temperature=0.0)
    assert len(t.prompt_token_ids) == 91 and len(t.token_ids) == 5
    # Near the end of the context window generation stops with "length".
    (e,) = llm.generate([464] * 90, max_new_tokens=50, ignore_eos=True)
    assert len(e.token_ids) == 6 and e.finish_reason == "length"
    with pytest.raises(ValueError, match="max_new_tokens"):
        llm.generate(TEXTS[0], max_new_tokens=-1)
    with pytest.raises(ValueError, match="empty"):
        llm.generate([[]], max_new_tokens=3)
    with pytest.raises(ValueError, match="token id 50257"):
        llm.generate([1, 50257], max_new_tokens=3)
    with pytest.raises(TypeError, match="prompt 1"):
        llm.generate(["ok", 3.5], max_new_tokens=3)


def test_repr_and_default(llm, monkeypatch, tmp_path):
    r = repr(llm)
    assert "vocab=50257" in r and "device=cpu" in r and "dtype=float32" in r and "params=" in r
    monkeypatch.setattr(generator_module, "ASSETS", tmp_path / "assets")
    with pytest.raises(FileNotFoundError, match="default model"):
        Generator.default()


def test_bf16_greedy_mostly_agrees_with_fp32(ckpt, llm):
    bf = Generator.from_pretrained(ckpt, dtype="bfloat16")
    assert "dtype=bfloat16" in repr(bf)
    kw = dict(temperature=0.0, max_new_tokens=8, ignore_eos=True)
    a = [c.token_ids for c in llm.generate(TEXTS, **kw)]
    b = [c.token_ids for c in bf.generate(TEXTS, **kw)]
    first = sum(x[0] == y[0] for x, y in zip(a, b, strict=True))
    assert first >= len(TEXTS) - 1


def test_decode_logits_are_bitwise_batch_invariant_fp32(llm):
    """A row's logits, bit for bit: alone vs. in slot k among 15 rows of other lengths."""
    import numpy as np
    from gpt_hybrid.engine import KVCache

    model = llm.model
    engine = Engine(model, None, max_batch_size=16, batch_invariant=True)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 50000, (20,), generator=g).tolist()
    others = [torch.randint(0, 50000, (3 + 4 * i,), generator=g).tolist() for i in range(15)]
    for k in (0, 9, 15):
        alone = KVCache(model.config, 16, 96)
        crowd = KVCache(model.config, 16, 96)
        engine.prefill(alone, prompt, 0)
        for b, p in enumerate(others[:k] + [prompt] + others[k:]):
            engine.prefill(crowd, p, b)
        tokens = np.zeros(16, dtype=np.int64)
        for step in range(6):
            tokens[:] = torch.randint(0, 50000, (16,), generator=g).numpy()
            a = engine.decode_step(alone, tokens[k : k + 1].copy(), 1)[0]
            c = engine.decode_step(crowd, tokens, 16)[k]
            assert torch.equal(a, c), (k, step, (a - c).abs().max())


def test_from_pretrained_by_repo_id_from_an_offline_cache(ckpt, tmp_path, monkeypatch, llm):
    """A repo id resolves through a huggingface_hub cache on disk; model and tokenizer load."""
    import huggingface_hub
    from _engine_util import make_hub_cache

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    make_hub_cache(tmp_path / "hub", "someone/tiny-gpt2", ckpt)
    hub = Generator.from_pretrained("someone/tiny-gpt2", cache_dir=tmp_path / "hub")
    kw = dict(temperature=0.0, max_new_tokens=5)
    assert hub.generate(TEXTS[0], **kw)[0].token_ids == llm.generate(TEXTS[0], **kw)[0].token_ids
    with pytest.raises(FileNotFoundError, match="offline"):
        Generator.from_pretrained("someone/not-cached", cache_dir=tmp_path / "hub")


def test_batched_prefill_equals_one_prompt_at_a_time(llm):
    """Prompts of close lengths share one padded prefill call: same logits, same cache rows."""
    from gpt_hybrid.engine import KVCache

    engine = Engine(llm.model, llm.tokenizer, max_batch_size=8)
    prompts = [list(range(100 + i, 100 + i + n)) for i, n in enumerate((10, 12, 11, 12, 9, 3))]
    groups = engine._prefill_groups([len(p) for p in prompts])
    assert any(len(g) > 1 for g in groups)  # the case under test really batches
    cfg = llm.model.config
    together, alone = KVCache(cfg, 8, 40), KVCache(cfg, 8, 40)
    got = engine.prefill_many(together, [(p, 7 - i) for i, p in enumerate(prompts)])
    for i, p in enumerate(prompts):
        want = engine.prefill(alone, p, 7 - i)
        torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-5)
        n = len(p)
        assert together.lengths[7 - i] == n
        torch.testing.assert_close(together.k[:, 7 - i, :, :n], alone.k[:, 7 - i, :, :n])
        torch.testing.assert_close(together.v[:, 7 - i, :, :n], alone.v[:, 7 - i, :, :n])


def test_batched_prefill_greedy_equals_the_reference(llm):
    """Eight similar-length prompts admitted at once (batched prefill), then decoded together."""
    engine = Engine(llm.model, llm.tokenizer, max_batch_size=8)
    ids = [llm.tokenizer.encode(f"{w} was the best of times, it was") for w in TEXTS[:7] + ["x"]]
    params = greedy(max_new_tokens=6, ignore_eos=True)
    out = engine.generate(ids, params)
    for prompt, (c,) in zip(ids, out, strict=True):
        assert c.token_ids == reference_generate(llm.model, prompt, 6)


@pytest.mark.parametrize("invariant", [False, True])
def test_prefill_groups_bound_padding_and_size(llm, invariant):
    import random

    from gpt_hybrid.engine import _PREFILL_TOKENS

    engine = Engine(llm.model, llm.tokenizer, batch_invariant=invariant)
    rng = random.Random(3)
    lengths = [rng.choice([rng.randint(1, 20), rng.randint(1, 900)]) for _ in range(300)]
    groups = engine._prefill_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        if invariant:
            assert len(g) == 1
        if len(g) > 1:
            width = max(lengths[i] for i in g)
            real = sum(lengths[i] for i in g)
            assert len(g) * width <= _PREFILL_TOKENS
            assert len(g) * width <= 1.25 * real
    if not invariant:
        assert len(groups) < len(lengths) / 2  # short prompts really share calls


def test_unfilled_cache_is_never_read_past_a_row_and_64_dim_heads_match(tmp_path, monkeypatch):
    """float32 on the CPU makes its KV cache unfilled (``zero=False``): the native decode
    attention must never read a position no row has written. The cache is filled with NaN
    here, so any such read would show in the tokens. Heads of 64 dimensions run the AVX-512
    kernel where the CPU has it; greedy output must equal the no-cache reference."""
    import gpt_hybrid.engine as engine_module
    from gpt_hybrid.tokenizer import Tokenizer

    made = []

    class Garbage(engine_module.KVCache):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(kwargs.get("zero", True))
            with torch.inference_mode():
                self.k.fill_(float("nan"))
                self.v.fill_(float("nan"))

    monkeypatch.setattr(engine_module, "KVCache", Garbage)
    from gpt_hybrid.model import GPT2

    path = make_hf_checkpoint(tmp_path, seed=3, n_embd=128, n_head=2, vocab_size=256)
    tok = Tokenizer.from_ranks({bytes([b]): b for b in range(256)})
    llm = Generator(GPT2.from_pretrained(path), tok, max_batch_size=3)
    prompts = [[(11 * i + j) % 256 for j in range(2 + 5 * i)] for i in range(5)]
    params = [greedy(max_new_tokens=n, ignore_eos=True) for n in (9, 4, 12, 1, 6)]
    out = llm.engine.generate(prompts, params)
    assert made == [False]
    for prompt, p, (c,) in zip(prompts, params, out, strict=True):
        assert c.token_ids == reference_generate(llm.model, prompt, p.max_new_tokens)


def test_an_unfilled_cache_is_zeros_and_not_resident_until_written():
    """``KVCache(zero=False)`` (float32 CPU): anonymous pages the kernel zero-fills on first
    touch, so a large cache costs no RSS until positions are written, and never holds
    garbage (not even on 2 MB pages, which would make a whole 2 MB resident per touch)."""
    from gpt_hybrid.engine import KVCache
    from gpt_hybrid.model import GPT2Config

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    cfg = GPT2Config(n_layer=4, n_head=4, n_embd=256)
    before = rss_mb()
    cache = KVCache(cfg, 8, 1024, zero=False)  # 2 x 32 MB
    assert cache.k.shape == (4, 8, 4, 1024, 64) and cache.k.dtype == torch.float32
    assert rss_mb() < before + 4
    with torch.inference_mode():
        cache.k[0, 0, 0, :4] = 1.0  # one position: one small page, not 2 MB
    assert rss_mb() < before + 1.5
    assert float(cache.v.abs().sum()) == 0.0 and float(cache.k.sum()) == 4 * 64


def test_freeing_a_slot_of_an_unfilled_cache_gives_its_pages_back():
    """A finished sequence's slot is handed back to the kernel (``free_slot``): its pages
    leave the RSS and read as zeros, and the other slots keep their contents."""
    from gpt_hybrid.engine import KVCache
    from gpt_hybrid.model import GPT2Config

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    cfg = GPT2Config(n_layer=4, n_head=4, n_embd=256)
    cache = KVCache(cfg, 4, 1024, zero=False)  # 2 x 16 MB; a slot is 1 MB per layer per K/V
    with torch.inference_mode():
        cache.k[:, 1:3] = 1.0
        cache.v[:, 1:3] = 2.0
    cache.lengths[1:3] = 1024
    full = rss_mb()
    cache.free_slot(1)
    assert rss_mb() < full - 6  # 8 MB of slot 1 returned
    assert cache.lengths[1] == 0
    assert float(cache.k[:, 1].abs().sum()) == 0.0 and float(cache.v[:, 1].abs().sum()) == 0.0
    assert bool((cache.k[:, 2] == 1.0).all()) and bool((cache.v[:, 2] == 2.0).all())
    filled = KVCache(cfg, 2, 16)  # the default zero-filled cache: only its length is reset
    with torch.inference_mode():
        filled.k.fill_(3.0)
    filled.free_slot(0)
    assert bool((filled.k == 3.0).all())
