"""``gpt_hybrid.linear``: float32 CPU matmuls through oneDNN, checked against ``F.linear``.

The fast path must give F.linear's results (to float32 rounding), a row's result must not
depend on how many other rows share the call (the batch-invariant engine relies on it), and
every case it does not cover (one row, a gradient, other dtypes, a modified weight) must fall
back to F.linear.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from gpt_hybrid.linear import Linear, linear, onednn_available, padded_rows
from torch import nn

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")


def weights(k: int, n: int, layout: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if layout == "view":  # the checkpoint's [in, out] tensor viewed as [out, in], as loaded
        return (torch.randn(k, n, generator=g) * 0.05).t()
    return torch.randn(n, k, generator=g) * 0.05


@pytest.mark.parametrize("layout", ["view", "contiguous"])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 17, 32, 33, 100, 257])
def test_equals_f_linear(layout: str, rows: int) -> None:
    w = weights(96, 200, layout)
    b = torch.randn(200)
    x = torch.randn(rows, 96)
    with torch.no_grad():
        got, want = linear(x, w, b), F.linear(x, w, b)
    assert got.shape == want.shape == (rows, 200)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(linear(x, w, None), F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_three_dimensional_input() -> None:
    w, x = weights(64, 80, "view"), torch.randn(3, 7, 64)
    got = linear(x, w, None)
    assert got.shape == (3, 7, 80)
    torch.testing.assert_close(got, F.linear(x, w), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.reshape(21, 80), linear(x.reshape(21, 64), w, None))


@needs_onednn
@pytest.mark.parametrize("layout", ["view", "contiguous"])
def test_a_row_does_not_depend_on_the_batch(layout: str) -> None:
    """Row 0 and the last row, bit for bit, whatever the batch height from 2 rows to 130
    (heights above 32 are padded: the padding must not change a row either)."""
    w = weights(768, 384, layout)
    x = torch.randn(130, 768)
    first = linear(x[:2], w, None)[0]
    for rows in [3, 4, 5, 8, 16, 31, 32, 33, 47, 64, 100, 130]:
        y = linear(x[:rows], w, None)
        assert torch.equal(y[0], first), rows
        assert torch.equal(y[rows - 1], linear(x[rows - 2 : rows], w, None)[1]), rows


def test_padded_rows_bounds_the_shapes_and_the_waste() -> None:
    padded = [padded_rows(m) for m in range(1, 4097)]
    assert padded[:32] == list(range(1, 33))
    assert all(p >= m and (p - m) / m <= 1 / 8 for m, p in enumerate(padded, start=1))
    assert len(set(padded)) <= 32 + 8 * 7  # exact up to 32, then 8 per doubling


def test_gradients_take_the_autograd_path() -> None:
    """The oneDNN op has no backward; with a gradient wanted, F.linear runs instead."""
    layer = Linear(16, 8)
    x = torch.randn(5, 16, requires_grad=True)
    layer(x).square().sum().backward()
    ref = Linear(16, 8)
    ref.load_state_dict(layer.state_dict())
    x2 = x.detach().clone().requires_grad_(True)
    F.linear(x2, ref.weight, ref.bias).square().sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_dtypes_equal_f_linear(dtype: torch.dtype) -> None:
    w, x = weights(32, 24, "view").to(dtype), torch.randn(6, 32).to(dtype)
    with torch.no_grad():
        assert torch.equal(linear(x, w, None), F.linear(x, w))


@needs_onednn
def test_packed_weight_equals_the_plain_one_and_goes_stale() -> None:
    layer = Linear(768, 1000, bias=False)
    x = torch.randn(32, 768)
    with torch.no_grad():
        plain = layer(x)
        assert layer.pack()
        packed = layer(x)
        torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)
        # Packed, one row goes to oneDNN too, with the bits it has in any batch.
        one = layer(x[:1])
        assert torch.equal(one[0], packed[0])
        torch.testing.assert_close(one, F.linear(x[:1], layer.weight), rtol=1e-5, atol=1e-5)
        assert layer.pack()  # again: keeps the copy it has
        layer.weight.mul_(2.0)  # in place: the blocked copy is now stale and must not be used
        torch.testing.assert_close(layer(x), 2 * plain, rtol=1e-5, atol=1e-5)
    assert layer._packed is None


@needs_onednn
def test_pack_model_releases_the_checkpoint_pages_and_keeps_the_values(tmp_path) -> None:
    """Weights mapped from a safetensors file: packed, their pages go back to the kernel
    (RSS drops), and the parameters still read the same values (faulted back in)."""
    from gpt_hybrid.linear import pack_model
    from safetensors.torch import load_file, save_file

    save_file({"w": torch.randn(4096, 1024) * 0.05}, tmp_path / "w.safetensors")
    model = torch.nn.Sequential(Linear(1024, 4096, bias=False))
    weight = load_file(tmp_path / "w.safetensors")["w"]  # memory-mapped, like the loader's
    model[0].weight = torch.nn.Parameter(weight, requires_grad=False)
    expected = weight.clone()
    x = torch.randn(3, 1024)

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    _ = float(weight.sum())  # make its 16 MB resident
    before = rss_mb()
    assert pack_model(model) == 1
    after = rss_mb()
    assert after < before + 8, (before, after)  # +16 MB blocked copy, -16 MB of file pages
    assert torch.equal(model[0].weight, expected)
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.linear(x, expected), rtol=1e-5, atol=1e-5)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _in_page_cache(t: torch.Tensor) -> float:
    """The fraction of ``t``'s pages that ``mincore`` reports in core (for a file mapping:
    in the page cache, mapped or not)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    start, n = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
    lo = start // 4096 * 4096
    pages = (start + n - lo + 4095) // 4096
    vec = (ctypes.c_ubyte * pages)()
    assert libc.mincore(ctypes.c_void_p(lo), ctypes.c_size_t(pages * 4096), vec) == 0
    return sum(v & 1 for v in vec) / pages


@needs_onednn
def test_a_weight_an_embedding_shares_stays_in_the_page_cache(tmp_path) -> None:
    """A tied LM head (the embedding still reads its rows): packing unmaps its pages (RSS
    drops) but leaves them in the page cache, so a row read later is not a read from disk;
    an untied weight's pages leave the page cache too."""
    from gpt_hybrid.linear import pack_model
    from safetensors.torch import load_file, save_file

    save_file(
        {"tied": torch.randn(4096, 1024), "other": torch.randn(4096, 1024)},
        tmp_path / "w.safetensors",
    )
    os.sync()  # written pages are dirty until flushed, and the kernel reclaims only clean ones
    weights = load_file(tmp_path / "w.safetensors")
    emb, head = nn.Embedding(4096, 1024), Linear(1024, 4096, bias=False)
    other = Linear(1024, 4096, bias=False)
    emb.weight = head.weight = nn.Parameter(weights["tied"], requires_grad=False)
    other.weight = nn.Parameter(weights["other"], requires_grad=False)
    model = nn.ModuleList([emb, head, other])
    expected = weights["tied"].clone()
    _ = float(weights["tied"].sum()) + float(weights["other"].sum())  # 32 MB resident
    before = _rss_mb()
    assert pack_model(model) == 2
    assert _rss_mb() < before + 8  # +32 MB of blocked copies, -32 MB of mapped file pages
    assert _in_page_cache(weights["tied"]) > 0.9
    assert _in_page_cache(weights["other"]) < 0.5
    ids = torch.tensor([0, 17, 4095])
    assert torch.equal(emb(ids), expected[ids])


@needs_onednn
def test_packed_bfloat16_equals_f_linear_and_a_row_does_not_depend_on_the_batch() -> None:
    layer = Linear(256, 512).to(torch.bfloat16)
    x = torch.randn(40, 256).to(torch.bfloat16)
    with torch.no_grad():
        plain = layer(x)  # unpacked bfloat16: torch's own path
        assert layer.pack()
        packed = layer(x)
        torch.testing.assert_close(packed.float(), plain.float(), rtol=2e-2, atol=2e-2)
        for rows in (1, 2, 7, 33):
            assert torch.equal(layer(x[:rows])[0], packed[0]), rows


def test_pack_refuses_what_it_cannot_use() -> None:
    layer = Linear(8, 4).to(torch.float16)
    assert not layer.pack()
    assert layer._packed is None


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("rows", [1, 5, 40])
def test_fused_tanh_gelu_equals_gelu_of_the_output(pack: bool, rows: int) -> None:
    layer = Linear(64, 256)
    if pack:
        layer.pack()
    x = torch.randn(2, rows, 64)
    with torch.no_grad():
        got = layer.forward_tanh_gelu(x)
        want = F.gelu(F.linear(x, layer.weight, layer.bias), approximate="tanh")
    assert got.shape == (2, rows, 256)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # With a gradient wanted it is the plain autograd path.
    assert layer.forward_tanh_gelu(x).requires_grad
