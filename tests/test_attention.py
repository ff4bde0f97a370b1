"""``_native.decode_attention``: the decode step's attention, against torch's SDPA.

One query per row over the first ``lengths[b]`` cache positions of slot ``b``; positions past
a row's length (and slots past the batch) must not matter, and bad shapes or lengths raise
``ValueError``, never a panic. Heads of 64 dimensions (GPT-2's) run the AVX-512 kernel where
the CPU has it, other sizes the portable loops: both are tested.

``_native.decode_attention_step`` also appends each row's new key and value, read from
``c_attn``'s output, before attending.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gpt_hybrid import _native


def case(rows=5, slots=7, heads=6, max_len=40, dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(slots, heads, max_len, dim, generator=g)
    v = torch.randn(slots, heads, max_len, dim, generator=g)
    q = torch.randn(rows, heads, dim, generator=g)
    lengths = torch.randint(1, max_len + 1, (rows,), generator=g)
    lengths[0] = max_len
    return q, k, v, lengths


def sdpa(q, k, v, lengths, scale):
    rows, L = q.shape[0], int(lengths.max())
    mask = (torch.arange(L)[None, :] < lengths[:, None])[:, None, None, :]
    y = F.scaled_dot_product_attention(
        q[:, :, None], k[:rows, :, :L], v[:rows, :, :L], attn_mask=mask, scale=scale
    )
    return y[:, :, 0]


DIMS = [24, 64]


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("seed", range(4))
def test_equals_sdpa_with_a_mask(seed, dim):
    q, k, v, lengths = case(seed=seed, dim=dim)
    out = torch.empty_like(q)
    _native.decode_attention(q.numpy(), k.numpy(), v.numpy(), lengths.numpy(), 0.2, out.numpy())
    torch.testing.assert_close(out, sdpa(q, k, v, lengths, 0.2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim", DIMS)
def test_positions_past_a_row_and_other_slots_do_not_matter(dim):
    q, k, v, lengths = case(rows=3, slots=5, dim=dim)
    lengths = torch.tensor([10, 3, 25])
    out = np.empty(q.shape, np.float32)
    _native.decode_attention(q.numpy(), k.numpy(), v.numpy(), lengths.numpy(), 1.0, out)
    for b, n in enumerate(lengths.tolist()):
        k[b, :, n:] = float("nan")
        v[b, :, n:] = float("nan")
    k[3:], v[3:] = float("nan"), float("inf")
    again = np.empty_like(out)
    _native.decode_attention(q.numpy(), k.numpy(), v.numpy(), lengths.numpy(), 1.0, again)
    assert np.array_equal(out, again)


@pytest.mark.parametrize("dim", DIMS)
def test_a_row_alone_equals_the_row_in_a_batch(dim):
    """Batch invariance by construction: each (row, head) is computed on its own."""
    q, k, v, lengths = case(rows=6, slots=6, dim=dim)
    out = np.empty(q.shape, np.float32)
    _native.decode_attention(q.numpy(), k.numpy(), v.numpy(), lengths.numpy(), 0.5, out)
    for b in range(6):
        one = np.empty((1, *q.shape[1:]), np.float32)
        kb, vb = k[b : b + 1].contiguous().numpy(), v[b : b + 1].contiguous().numpy()
        _native.decode_attention(q[b : b + 1].numpy(), kb, vb, lengths[b : b + 1].numpy(), 0.5, one)
        assert np.array_equal(one[0], out[b])


@pytest.mark.parametrize("dim", DIMS)
def test_heads_in_groups_give_the_bits_of_heads_alone(dim):
    """Heads run four at a time with interleaved passes; each must equal its own run."""
    q, k, v, lengths = case(heads=6, dim=dim)
    out = np.empty(q.shape, np.float32)
    _native.decode_attention(q.numpy(), k.numpy(), v.numpy(), lengths.numpy(), 0.3, out)
    for h in range(6):
        one = np.empty((q.shape[0], 1, q.shape[2]), np.float32)
        qh = q[:, h : h + 1].contiguous().numpy()
        kh, vh = k[:, h : h + 1].contiguous().numpy(), v[:, h : h + 1].contiguous().numpy()
        _native.decode_attention(qh, kh, vh, lengths.numpy(), 0.3, one)
        assert np.array_equal(one[:, 0], out[:, h]), h


def test_bad_input_raises_valueerror():
    q, k, v, lengths = case()
    qn, kn, vn, ln = q.numpy(), k.numpy(), v.numpy(), lengths.numpy()
    out = np.empty(q.shape, np.float32)
    bad = [
        (qn, kn, vn, np.array([0, 1, 1, 1, 1]), out),  # a row over no position
        (qn, kn, vn, np.array([41, 1, 1, 1, 1]), out),  # past the cache
        (qn, kn, vn, np.array([-1, 1, 1, 1, 1]), out),
        (qn, kn, vn[:, :, :20], ln, out),  # k and v differ
        (qn[:, :2], kn, vn, ln, out[:, :2]),  # heads differ
        (qn, kn, vn, ln, out[:4]),  # output shape
        (qn, kn, vn, ln[:4], out),  # one length per row
        (np.ascontiguousarray(qn[:, :, ::-1])[:, :, ::-1], kn, vn, ln, out),  # not contiguous
    ]
    big = case(rows=9, slots=7)
    bad.append((big[0].numpy(), kn, vn, np.ones(9, np.int64), np.empty((9, 6, 24), np.float32)))
    for args in bad:
        with pytest.raises(ValueError):
            _native.decode_attention(*args[:4], 1.0, args[4])
    with pytest.raises(TypeError):
        _native.decode_attention(qn.astype(np.float64), kn, vn, ln, 1.0, out)


def qkv_case(rows=5, slots=7, heads=6, max_len=40, dim=64, seed=1):
    """A cache, the rows' lengths before the step, and c_attn-shaped output [rows, 3*C]."""
    q, k, v, lengths = case(rows, slots, heads, max_len, dim, seed)
    lengths = lengths.clamp(max=max_len - 1)  # room for the new position
    g = torch.Generator().manual_seed(seed + 100)
    qkv = torch.randn(rows, 3 * heads * dim, generator=g)
    return qkv, k, v, lengths


@pytest.mark.parametrize("dim", DIMS)
def test_step_appends_the_new_key_and_value_then_attends(dim):
    qkv, k, v, before = qkv_case(dim=dim)
    rows, heads = qkv.shape[0], k.shape[1]
    k0, v0 = k.clone(), v.clone()
    out = torch.empty(rows, heads * dim)
    _native.decode_attention_step(
        qkv.numpy(), k.numpy(), v.numpy(), (before + 1).numpy(), 0.3, out.numpy()
    )
    # The cache: the new key/value at each row's position, nothing else changed.
    q, kn, vn = qkv.view(rows, 3, heads, dim).unbind(1)
    k_want, v_want = k0.clone(), v0.clone()
    for b, n in enumerate(before.tolist()):
        k_want[b, :, n], v_want[b, :, n] = kn[b], vn[b]
    assert torch.equal(k, k_want) and torch.equal(v, v_want)
    # The output: attention over the updated cache, as the plain kernel computes it (same
    # bits) and as SDPA does (close).
    plain = np.empty((rows, heads, dim), np.float32)
    _native.decode_attention(
        q.contiguous().numpy(), k.numpy(), v.numpy(), (before + 1).numpy(), 0.3, plain
    )
    assert np.array_equal(out.numpy().reshape(rows, heads, dim), plain)
    want = sdpa(q.contiguous(), k, v, before + 1, 0.3)
    torch.testing.assert_close(out.view(rows, heads, dim), want, rtol=1e-5, atol=1e-5)


def test_step_bad_input_raises_valueerror():
    qkv, k, v, before = qkv_case()
    rows, C = qkv.shape[0], qkv.shape[1] // 3
    qn, kn, vn, ln = qkv.numpy(), k.numpy(), v.numpy(), (before + 1).numpy()
    out = np.empty((rows, C), np.float32)
    bad = [
        (qn, kn, vn, np.zeros(rows, np.int64), out),  # no position to write
        (qn, kn, vn, np.full(rows, 41), out),  # past the cache
        (qn[:, :-3], kn, vn, ln, out),  # not 3 x heads x dim
        (qn, kn, vn[:, :3], ln, out),  # k and v differ
        (qn, kn, vn, ln, out[:, :-1]),  # output shape
        (qn, kn, vn, ln[:-1], out),  # one length per row
        (qn, kn[:, :, :, ::2], vn[:, :, :, ::2], ln, np.empty((rows, C // 2), np.float32)),
        (qn[:, :0], kn[:, :0], vn[:, :0], ln, out[:, :0]),  # no heads
    ]
    for args in bad:
        with pytest.raises(ValueError):
            _native.decode_attention_step(*args[:4], 1.0, args[4])
    with pytest.raises((ValueError, TypeError)):  # the same array twice: one writer at a time
        _native.decode_attention_step(qn, kn, kn, ln, 1.0, out)
    assert torch.equal(k, qkv_case()[1])  # nothing was written by a refused call
