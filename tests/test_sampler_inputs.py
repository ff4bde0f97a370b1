"""Input forms (numpy, torch, dtypes, per-row parameters) and every kind of bad input."""

from __future__ import annotations

import gpt_hybrid as gh
import numpy as np
import pytest
import torch
from gpt_hybrid.sampling import _as_logits


def _x(rows: int = 4, vocab: int = 100) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((rows, vocab)) * 2).astype(np.float32)


def test_c_contiguous_float32_is_read_without_a_copy() -> None:
    x = _x()
    assert _as_logits(x) is x
    t = torch.from_numpy(x.copy())
    assert np.shares_memory(_as_logits(t), t.numpy())


def test_torch_tensors_and_other_dtypes_give_the_same_ids() -> None:
    x = _x()
    want = gh.sample(x, seed=1, top_k=10).tolist()
    assert gh.sample(torch.from_numpy(x), seed=1, top_k=10).tolist() == want
    assert gh.sample(x.astype(np.float64), seed=1, top_k=10).tolist() == want
    strided = np.zeros((4, 200), np.float32)
    strided[:, ::2] = x
    assert gh.sample(strided[:, ::2], seed=1, top_k=10).tolist() == want
    assert gh.sample(torch.from_numpy(x).T.contiguous().T, seed=1, top_k=10).tolist() == want
    grad = torch.from_numpy(x).requires_grad_(True)
    assert gh.sample(grad, seed=1, top_k=10).tolist() == want
    # Half precisions are converted; compare with the converted values.
    for dtype in (torch.float16, torch.bfloat16):
        t = torch.from_numpy(x).to(dtype)
        assert (
            gh.sample(t, seed=1, top_k=10).tolist()
            == gh.sample(t.float().numpy(), seed=1, top_k=10).tolist()
        )
    h = x.astype(np.float16)
    assert gh.sample(h, seed=1).tolist() == gh.sample(h.astype(np.float32), seed=1).tolist()


def test_scalars_and_per_row_values_mix() -> None:
    x = _x()
    ids = gh.sample(x, temperature=[0, 0, 1, 1], top_k=np.array([1, 2, 3, 4]), seed=[1, 2, 3, None])
    assert ids.shape == (4,) and ids.dtype == np.int64
    assert ids[0] == x[0].argmax() and ids[1] == x[1].argmax()
    assert gh.sample(x, top_k=torch.tensor([1, 1, 1, 1]), seed=0).tolist() == x.argmax(1).tolist()


def test_an_empty_batch_gives_no_ids() -> None:
    assert gh.sample(np.zeros((0, 10), np.float32)).shape == (0,)


def test_history_forms_agree() -> None:
    x = _x(2, 50)
    kw = dict(repetition_penalty=1.8, seed=4, temperature=0)
    lists = gh.sample(x, history=[[1, 2, 3], [4, 5, 6]], **kw)
    assert lists.tolist() == gh.sample(x, history=np.array([[1, 2, 3], [4, 5, 6]]), **kw).tolist()
    assert (
        lists.tolist() == gh.sample(x, history=torch.tensor([[1, 2, 3], [4, 5, 6]]), **kw).tolist()
    )
    assert gh.sample(x, history=[[], (7,)], **kw).shape == (2,)
    # The most likely token is penalised away when it is in the history.
    top = int(x[0].argmax())
    assert gh.sample(x[:1], temperature=0, repetition_penalty=1e6, history=[[top]])[0] != top


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(top_p=0.0), "top_p = 0.0 is invalid"),
        (dict(top_p=1.01), "top_p"),
        (dict(top_k=-1), "top_k = -1 is invalid"),
        (dict(temperature=-0.5), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(min_p=1.5), "min_p"),
        (dict(min_p=-0.1), "min_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=-1.0), "repetition_penalty"),
        (dict(presence_penalty=3.0), "presence_penalty"),
        (dict(frequency_penalty=-3.0), "frequency_penalty"),
        (dict(top_p=[0.5, 0.5, 2.0, 0.5]), r"top_p = 2.0 is invalid.*\(row 2\)"),
        (dict(top_k=[1, 2]), "top_k has 2 values for 4 rows"),
        (dict(seed=-1), "seed"),
        (dict(step=2**64), "step"),
        (dict(history=[[1]]), "history has 1 rows for 4 rows"),
        (dict(history=[[1], [2], [-3], [4]], repetition_penalty=1.1), "history row 2"),
        (dict(num_logprobs=-1), "num_logprobs"),
        (dict(num_logprobs=3), "needs return_logprobs=True"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gh.sample(_x(), **kw)


@pytest.mark.parametrize(
    "kw", [dict(top_k=1.5), dict(temperature="hot"), dict(seed=1.0), dict(top_p=None)]
)
def test_parameters_of_the_wrong_type_raise_type_error(kw: dict) -> None:
    with pytest.raises(TypeError):
        gh.sample(_x(), **kw)


def test_nan_and_inf_rows_are_errors_naming_the_row() -> None:
    x = _x()
    x[2, 17] = np.nan
    with pytest.raises(ValueError, match="logits row 2 contains NaN"):
        gh.sample(x)
    with pytest.raises(ValueError, match="row 2 contains NaN"):
        gh.probs(x, temperature=0)
    x[2, 17] = np.inf
    with pytest.raises(ValueError, match="row 2 contains \\+inf"):
        gh.sample(x, top_k=5)
    x[2] = -np.inf
    for kw in (dict(), dict(temperature=0), dict(top_k=3), dict(top_p=0.5), dict(min_p=0.1)):
        with pytest.raises(ValueError, match="row 2 is all -inf"):
            gh.sample(x, **kw)


def test_a_penalty_cannot_hide_a_nan() -> None:
    x = _x()
    x[1, 5] = np.nan
    with pytest.raises(ValueError, match="row 1 contains NaN"):
        gh.sample(x, repetition_penalty=1.2, history=[[5]] * 4)


@pytest.mark.parametrize(
    "logits,error",
    [
        (np.zeros(10, np.float32), ValueError),
        (np.zeros((2, 3, 4), np.float32), ValueError),
        (np.zeros((2, 0), np.float32), ValueError),
        (np.zeros((2, 5), np.int64), TypeError),
        (np.zeros((2, 5), bool), TypeError),
        (torch.zeros((2, 5), dtype=torch.int32), TypeError),
        ("not logits", TypeError),
    ],
)
def test_wrong_shapes_and_dtypes_are_refused(logits: object, error: type) -> None:
    with pytest.raises(error):
        gh.sample(logits)


def test_probs_rows_sum_to_one_and_greedy_is_one_hot() -> None:
    x = _x()
    p = gh.probs(x, top_k=7, top_p=0.8)
    assert p.dtype == np.float32 and p.shape == x.shape
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    g = gh.probs(x, temperature=0)
    assert (
        (g.argmax(1) == x.argmax(1)).all() and (g.sum(1) == 1).all() and ((g > 0).sum(1) == 1).all()
    )


def test_threads_share_the_sampler_safely() -> None:
    from concurrent.futures import ThreadPoolExecutor

    x = _x(16, 5000)
    want = gh.sample(x, seed=list(range(16)), top_p=0.9).tolist()
    with ThreadPoolExecutor(4) as pool:
        got = list(
            pool.map(lambda _: gh.sample(x, seed=list(range(16)), top_p=0.9).tolist(), range(16))
        )
    assert all(g == want for g in got)
