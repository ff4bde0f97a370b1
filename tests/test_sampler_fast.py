"""The scalar fast path of ``gh.sample`` against the general path, bit for bit.

``sample`` with plain Python scalars, no history and no logprobs skips the parameter
matrices (``_sample_scalar`` → ``_native.sample_scalar``). The general path it must equal is
what ``sample`` ran before: ``_prepare`` then ``_native.sample_batch``, called here directly.
"""

from __future__ import annotations

import itertools

import gpt_hybrid as gh
import numpy as np
import pytest
import torch
from gpt_hybrid import _native
from gpt_hybrid import sampling as S
from gpt_hybrid.sampling_params import MAX_U64
from hypothesis import given, settings
from hypothesis import strategies as st

NEUTRAL = dict(
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    min_p=0.0,
    repetition_penalty=1.0,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    seed=None,
    step=0,
    sequence=0,
)


def general(logits: object, **kw: object) -> np.ndarray:
    """The general path of ``sample`` (parameter matrices, ``sample_batch``)."""
    x, floats, ints, ids, offsets = S._prepare(logits, {**NEUTRAL, **kw}, None)
    return _native.sample_batch(x, floats, ints, ids, offsets, False, 0)[0]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls that reach the fast native entry."""
    calls: list[int] = []
    real = _native.sample_scalar

    def counted(*args: object) -> np.ndarray:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_native, "sample_scalar", counted)
    return calls


def rows_of(kind: str, rows: int, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """Random, tied, -inf and +-1e30 rows."""
    x = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
    if kind == "tied":
        x = np.round(x).astype(np.float32)  # a few distinct values, many ties at the k-th
        x[0] = 1.5  # one all-equal row
    elif kind == "-inf":
        x[rng.random((rows, vocab)) < 0.7] = -np.inf
        x[:, rng.integers(vocab)] = 0.0  # at least one finite value per row
    elif kind == "1e30":
        x[rng.random((rows, vocab)) < 0.5] *= 1e30
        x[rng.random((rows, vocab)) < 0.1] = -1e30
    return np.ascontiguousarray(x)


FILTERS = [
    dict(zip(("temperature", "top_k", "top_p", "min_p"), combo, strict=True))
    for combo in itertools.product(
        [1.0, 0.7, 0.0, 0, 2],  # 0 and 2 as ints take the fast path too
        [0, 1, 5, 2**70],
        [1.0, 0.9, 1e-9],
        [0.0, 0.05, 1],
    )
]


@pytest.mark.parametrize("kind", ["random", "tied", "-inf", "1e30"])
@pytest.mark.parametrize("rows", [1, 3, 8, 64])
def test_the_fast_path_equals_the_general_path(spy: list[int], kind: str, rows: int) -> None:
    rng = np.random.default_rng(rows * 7 + len(kind))
    x = rows_of(kind, rows, 300, rng)
    for i, kw in enumerate(FILTERS):
        seeded = dict(kw, seed=int(rng.integers(2**63)) * 2 + i % 2, step=i, sequence=i % 3)
        want = general(x, **seeded)
        got = gh.sample(x, **seeded)
        assert got.dtype == np.int64 and got.shape == (rows,)
        np.testing.assert_array_equal(got, want, err_msg=str(seeded))
        # Unseeded: the same numbers taken from the global stream, and no more.
        gh.manual_seed(i)
        got = gh.sample(x, **kw)
        after_fast = S._seeds.draw(2)
        gh.manual_seed(i)
        want = general(x, **kw)
        after_general = S._seeds.draw(2)
        np.testing.assert_array_equal(got, want, err_msg=str(kw))
        np.testing.assert_array_equal(after_fast, after_general)
    assert len(spy) == 2 * len(FILTERS)


def test_gpt2_sized_rows_take_the_same_tokens(spy: list[int]) -> None:
    # Top-k of 50 on 50,257 logits runs the block-maxima selection, min-p alone the
    # threshold pass, top-p alone the histogram cut: every kernel sees the fast path.
    rng = np.random.default_rng(3)
    x = rows_of("random", 3, 50257, rng)
    for kw in (
        dict(top_k=50, top_p=0.95),
        dict(top_p=0.9),
        dict(min_p=0.05),
        dict(temperature=0.0),
        dict(temperature=0.8, top_k=40, min_p=0.1),
    ):
        for step in range(5):
            np.testing.assert_array_equal(
                gh.sample(x, seed=11, step=step, **kw), general(x, seed=11, step=step, **kw)
            )
    assert len(spy) == 25


def test_neutral_penalties_and_extreme_counters_take_the_fast_path(spy: list[int]) -> None:
    x = rows_of("random", 4, 100, np.random.default_rng(5))
    for kw in (
        dict(seed=2, repetition_penalty=1.3, presence_penalty=-2, frequency_penalty=2.0),
        dict(seed=MAX_U64, step=MAX_U64, sequence=MAX_U64),
        dict(seed=0, top_k=MAX_U64),
        dict(seed=2, top_p=1, min_p=0, temperature=1e-300),
    ):
        np.testing.assert_array_equal(gh.sample(x, **kw), general(x, **kw))
    assert len(spy) == 4


@pytest.mark.parametrize(
    "args",
    [
        dict(top_k=[5, 5]),  # per-row values
        dict(top_p=np.float32(0.9)),  # numpy scalars
        dict(seed=np.int64(3)),
        dict(temperature=True),  # bool is refused, not taken for 1
        dict(history=[[1], [2]]),
        dict(return_logprobs=True),
        dict(num_logprobs=0.0),  # refused as a float, as before
    ],
)
def test_anything_unusual_takes_the_general_path(spy: list[int], args: dict) -> None:
    x = rows_of("random", 2, 50, np.random.default_rng(6))
    try:
        gh.sample(x, **args)
    except TypeError:
        pass
    assert spy == []


def test_logits_other_than_float32_c_arrays_take_the_general_path(spy: list[int]) -> None:
    x = rows_of("random", 2, 50, np.random.default_rng(6))
    t = torch.from_numpy(x)
    for logits in (
        x.astype(np.float64),
        x[:, ::2],
        x.astype(">f4"),
        t.half(),
        t.T.contiguous().T,
        torch.nn.Parameter(t),
    ):
        gh.sample(logits, seed=1)
    assert spy == []


def test_cpu_float32_tensors_take_the_fast_path(spy: list[int]) -> None:
    x = rows_of("random", 3, 500, np.random.default_rng(7))
    t = torch.from_numpy(x.copy())
    for logits in (t, t.clone().requires_grad_(True), t[1:], torch.from_numpy(x[:, 10:20].copy())):
        want = general(logits.detach().numpy(), seed=5, top_k=20, top_p=0.9)
        np.testing.assert_array_equal(gh.sample(logits, seed=5, top_k=20, top_p=0.9), want)
    assert len(spy) == 4


def test_unusual_logits_give_the_same_ids_as_their_float32_copy() -> None:
    x = rows_of("random", 3, 64, np.random.default_rng(8))
    want = gh.sample(x, seed=4, top_k=9)
    for logits in (x.astype(np.float64), torch.from_numpy(x), x.astype(">f4")):
        np.testing.assert_array_equal(gh.sample(logits, seed=4, top_k=9), want)
    assert gh.sample(np.zeros((0, 10), np.float32), seed=1).shape == (0,)
    assert gh.sample(np.zeros((0, 10), np.float32)).shape == (0,)


def _error(fn: object, *args: object, **kw: object) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.type, str(info.value)


@pytest.mark.parametrize(
    "kw",
    [
        dict(temperature=-1.0),
        dict(temperature=float("inf")),
        dict(temperature=float("nan")),
        dict(temperature=10**400),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_p=float("nan")),
        dict(min_p=-0.1),
        dict(min_p=2),
        dict(repetition_penalty=0.0),
        dict(presence_penalty=2.5),
        dict(frequency_penalty=-3),
        dict(top_k=-1),
        dict(top_k=1.0),
        dict(seed=-1),
        dict(seed=2**64),
        dict(seed=1.0),
        dict(step=2**64),
        dict(sequence=-5),
        dict(temperature="hot"),
        dict(top_p=None),
    ],
)
def test_bad_parameters_raise_what_the_general_path_raises(kw: dict) -> None:
    x = rows_of("random", 2, 30, np.random.default_rng(9))
    got = _error(gh.sample, x, **kw)
    assert got == _error(general, x, **kw)
    assert got[0] in (TypeError, ValueError, OverflowError)


def test_bad_rows_and_shapes_raise_what_the_general_path_raises() -> None:
    x = rows_of("random", 5, 40, np.random.default_rng(10))
    x[3, 7] = np.nan
    assert _error(gh.sample, x, seed=1) == (ValueError, "logits row 3 contains NaN")
    assert _error(gh.sample, x) == _error(general, x)
    x[3, 7] = np.inf
    assert _error(gh.sample, x, top_k=4) == (ValueError, "logits row 3 contains +inf")
    x[3] = -np.inf
    for kw in (dict(), dict(temperature=0), dict(top_k=3), dict(top_p=0.5), dict(min_p=0.1)):
        assert _error(gh.sample, x, **kw) == _error(general, x, **kw)
    for logits in (
        np.zeros(10, np.float32),
        np.zeros((2, 3, 4), np.float32),
        np.zeros((2, 0), np.float32),
        np.zeros((2, 5), np.int64),
    ):
        assert _error(gh.sample, logits) == _error(general, logits)


def test_the_seed_stream_is_numpys_full_range_integers() -> None:
    # Unseeded rows have always drawn integers(0, MAX_U64, endpoint=True): the faster
    # random_raw must give the same numbers, so that manual_seed keeps its meaning.
    gh.manual_seed(123)
    got = S._seeds.draw(1000)
    want = np.random.default_rng(123).integers(
        0, MAX_U64, size=1000, dtype=np.uint64, endpoint=True
    )
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, want)


scalar = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-3, 3),
    st.integers(-3, 3),
    st.integers(2**62, 2**70),
    st.sampled_from([0, 1, 0.0, 1.0, True, None, 10**400]),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    values=st.lists(
        st.one_of(st.integers(-40, 40).map(lambda v: v / 8), st.floats(width=32)),
        min_size=1,
        max_size=60,
    ),
    rows=st.integers(0, 3),
    kw=st.fixed_dictionaries(
        {},
        optional={
            "temperature": scalar,
            "top_k": scalar,
            "top_p": scalar,
            "min_p": scalar,
            "repetition_penalty": scalar,
            "presence_penalty": scalar,
            "frequency_penalty": scalar,
            "seed": scalar,
            "step": scalar,
            "sequence": scalar,
        },
    ),
)
def test_arbitrary_scalars_give_what_the_general_path_gives(
    values: list[float], rows: int, kw: dict
) -> None:
    # Same ids, or the same exception with the same message, for any scalar arguments.
    x = np.array(values * max(rows, 1), np.float32).reshape(max(rows, 1), len(values))[:rows]
    outcomes = []
    for fn in (gh.sample, general):
        gh.manual_seed(17)
        try:
            outcomes.append(fn(x, **kw).tolist())
        except Exception as e:  # any exception must be the general path's
            outcomes.append((type(e), str(e)))
        outcomes.append(S._seeds.draw(1).tolist())
    assert outcomes[:2] == outcomes[2:]
