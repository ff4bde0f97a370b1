"""``_native.decode_attention``: the decode step's attention, against torch's SDPA.

One query per row over the first ``lengths[b]`` cache positions of slot ``b``; positions past
a row's length (and slots past the batch) must not matter, and bad shapes or lengths raise
``ValueError``, never a panic.
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


@pytest.mark.parametrize("seed", range(4))
def test_equals_sdpa_with_a_mask(seed):
    q, k, v, lengths = case(seed=seed)
    out = torch.empty_like(q)
    _native.decode_attention(q.numpy(), k.numpy(), v.numpy(), lengths.numpy(), 0.2, out.numpy())
    torch.testing.assert_close(out, sdpa(q, k, v, lengths, 0.2), rtol=1e-5, atol=1e-5)


def test_positions_past_a_row_and_other_slots_do_not_matter():
    q, k, v, lengths = case(rows=3, slots=5)
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


def test_a_row_alone_equals_the_row_in_a_batch():
    """Batch invariance by construction: each (row, head) is computed on its own."""
    q, k, v, lengths = case(rows=6, slots=6)
    out = np.empty(q.shape, np.float32)
    _native.decode_attention(q.numpy(), k.numpy(), v.numpy(), lengths.numpy(), 0.5, out)
    for b in range(6):
        one = np.empty((1, *q.shape[1:]), np.float32)
        kb, vb = k[b : b + 1].contiguous().numpy(), v[b : b + 1].contiguous().numpy()
        _native.decode_attention(q[b : b + 1].numpy(), kb, vb, lengths[b : b + 1].numpy(), 0.5, one)
        assert np.array_equal(one[0], out[b])


def test_heads_in_groups_give_the_bits_of_heads_alone():
    """Heads run four at a time with interleaved passes; each must equal its own run."""
    q, k, v, lengths = case(heads=6)
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
