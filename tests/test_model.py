"""GPT2 (model.py) against Hugging Face's GPT2LMHeadModel on the same checkpoints."""

from __future__ import annotations

import pytest
import torch
from _engine_util import (
    load_hf,
    make_hf_checkpoint,
    one_torch_thread,  # noqa: F401  (an autouse fixture)
    reference_generate,
)
from gpt_hybrid.model import GPT2, GPT2Config

CONFIGS = [
    dict(),
    dict(n_layer=3, n_head=2, n_embd=48, activation_function="gelu", layer_norm_epsilon=1e-3),
    dict(n_layer=2, n_head=4, n_embd=32, n_inner=50, activation_function="relu"),
    dict(scale_attn_by_inverse_layer_idx=True, n_layer=3),
    dict(scale_attn_weights=False),
    dict(reorder_and_upcast_attn=True, activation_function="quick_gelu"),
    dict(tie_word_embeddings=False, activation_function="silu"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_logits_match_hf(tmp_path, cfg):
    path = make_hf_checkpoint(tmp_path, seed=len(cfg), **cfg)
    hf = load_hf(path)
    ours = GPT2.from_pretrained(path)
    torch.manual_seed(1)
    ids = torch.randint(0, 300, (3, 40))
    with torch.no_grad():
        want = hf(ids).logits
        got = ours(ids)
    assert got.shape == want.shape == (3, 40, 300)
    assert (got - want).abs().max().item() < 1e-4


def test_cached_prefill_and_decode_match_full_forward(tmp_path):
    path = make_hf_checkpoint(tmp_path)
    model = GPT2.from_pretrained(path)
    c = model.config
    torch.manual_seed(0)
    lengths = torch.tensor([5, 9, 1])
    ids = torch.randint(0, c.vocab_size, (3, 9))
    k = torch.zeros(c.n_layer, 4, c.n_head, 32, c.head_dim)
    v = torch.zeros_like(k)
    with torch.no_grad():
        last = model.prefill(ids, lengths, k, v, torch.tensor([0, 1, 2]))
        for r in range(3):
            full = model(ids[r : r + 1, : lengths[r]])
            assert (last[r] - full[0, -1]).abs().max() < 1e-4
        # Three decode steps with rows at different positions.
        seqs = [ids[r, : lengths[r]].tolist() for r in range(3)]
        pos = lengths.clone()
        for _ in range(3):
            nxt = torch.randint(0, c.vocab_size, (3,))
            logits = model.decode(nxt, pos, k, v)
            for r in range(3):
                seqs[r].append(int(nxt[r]))
                full = model(torch.tensor([seqs[r]]))
                assert (logits[r] - full[0, -1]).abs().max() < 1e-4
            pos += 1


def test_greedy_generation_matches_hf_generate(tmp_path):
    """A batch of prompts of different lengths, left-padded for HF as its docs prescribe."""
    path = make_hf_checkpoint(tmp_path, n_layer=3)
    hf = load_hf(path)
    ours = GPT2.from_pretrained(path)
    torch.manual_seed(3)
    prompts = [torch.randint(0, 300, (n,)).tolist() for n in (3, 17, 8, 30)]
    width = max(map(len, prompts))
    pad = 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    new = 20
    with torch.no_grad():
        out = hf.generate(
            ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=new,
            pad_token_id=pad,
            eos_token_id=None,
        )
    for row, p in enumerate(prompts):
        want = out[row, width:].tolist()
        assert reference_generate(ours, p, new) == want
        assert reference_generate(hf_logits(hf), p, new) == want


def hf_logits(hf):
    return lambda ids: hf(ids).logits


def test_fresh_model_trains_and_round_trips_through_hf(tmp_path):
    """GPT2(config) is trainable, and save_pretrained writes what HF loads, bit for bit."""
    from transformers import GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=50, n_positions=16)
    torch.manual_seed(0)
    model = GPT2(cfg)
    # GPT-2's init: std 0.02, residual projections scaled down by sqrt(2 * n_layer).
    assert abs(model.transformer.wte.weight.std().item() - 0.02) < 0.002
    assert model.transformer.h[0].mlp.c_proj.weight.std().item() < 0.012
    assert model.lm_head.weight is model.transformer.wte.weight
    data = torch.arange(16).repeat(4, 1) % 7  # a learnable periodic sequence
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits = model(data[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), data[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

    model.eval().save_pretrained(tmp_path)
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    again = GPT2.from_pretrained(tmp_path)
    with torch.no_grad():
        ours = model(data)
        assert (hf(data).logits - ours).abs().max() < 1e-4
        assert torch.equal(again(data), ours)


def test_bf16_and_fp16_run_close_to_fp32(tmp_path):
    path = make_hf_checkpoint(tmp_path)
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        ref = GPT2.from_pretrained(path)(ids)
        for dtype in ("bf16", torch.float16):
            model = GPT2.from_pretrained(path, dtype=dtype)
            got = model(ids)
            assert got.dtype == model.dtype != torch.float32
            # The argmax agrees almost everywhere; values are close relative to their spread.
            err = (got.float() - ref).abs().max() / ref.std()
            assert err < 0.1, err


def test_forward_rejects_bad_input(tmp_path):
    model = GPT2(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=10, n_positions=4))
    with pytest.raises(ValueError, match="context window"):
        model(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        model(torch.tensor([[10]]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        model(torch.zeros(3, dtype=torch.long))


def test_building_on_meta_runs_no_random_init(monkeypatch):
    """A loaded model is built on the meta device; torch's ``normal_`` there imports torch's
    compiler stack (0.9 s and ~150 MB on a process's first load), so nothing may call it.
    Built on the CPU, every weight is still initialised (HF's scheme: std 0.02)."""
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50, n_positions=16)

    def refuse(self, *args, **kwargs):
        raise AssertionError("normal_ called while building on meta")

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "normal_", refuse)
        with torch.device("meta"):
            model = GPT2(cfg)
    assert model.transformer.wte.weight.device.type == "meta"
    torch.manual_seed(0)
    model = GPT2(cfg)
    for name, p in model.named_parameters():
        if name.endswith(("wte.weight", "wpe.weight", "c_fc.weight")):
            assert 0.005 < float(p.detach().std()) < 0.05, name
