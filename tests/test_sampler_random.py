"""Draws: frequencies match the distribution, and a seeded row ignores the rest of the batch."""

from __future__ import annotations

import gpt_hybrid as gh
import numpy as np
import pytest
from _sampler_util import chi_square_critical
from gpt_hybrid import _native

N = 40_000


def _chi_square(ids: np.ndarray, p: np.ndarray) -> tuple[float, int]:
    counts = np.bincount(ids, minlength=len(p)).astype(np.float64)
    assert counts[p == 0].sum() == 0, "a filtered token was drawn"
    support = p > 0
    expected = p[support] * len(ids)
    return float(((counts[support] - expected) ** 2 / expected).sum()), int(support.sum()) - 1


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(top_k=8),
        dict(top_p=0.8, temperature=0.7),
        dict(min_p=0.1, temperature=1.5),
        dict(top_k=20, top_p=0.9, min_p=0.02),
    ],
)
def test_frequencies_over_steps_match_the_final_distribution(kw: dict) -> None:
    logits = (np.random.default_rng(11).standard_normal(30) * 1.5).astype(np.float32)
    p = gh.probs(logits[None, :], **kw)[0].astype(np.float64)
    # One row per draw, the same seed, steps 0..N-1: one counter stream.
    x = np.broadcast_to(logits, (N, 30))
    ids = gh.sample(x, seed=1234, step=np.arange(N), **kw)
    stat, df = _chi_square(ids, p)
    assert stat < chi_square_critical(df), (stat, df)


def test_frequencies_over_seeds_match_the_distribution() -> None:
    logits = np.log(np.array([0.5, 0.25, 0.125, 0.0625, 0.0625], np.float32))
    ids = gh.sample(np.broadcast_to(logits, (N, 5)), seed=np.arange(N), step=3)
    stat, df = _chi_square(ids, np.exp(logits.astype(np.float64)))
    assert stat < chi_square_critical(df), stat


def test_frequencies_on_a_gpt2_sized_row_with_top_p() -> None:
    rng = np.random.default_rng(12)
    logits = (rng.standard_normal(50257) * 3).astype(np.float32)
    logits[:6] += 12.0  # a handful of likely tokens carry ~all the mass
    p = gh.probs(logits[None, :], top_p=0.95)[0].astype(np.float64)
    assert 2 <= (p > 0).sum() < 1000
    ids = np.concatenate(
        [
            gh.sample(
                np.broadcast_to(logits, (500, 50257)),
                seed=5,
                step=np.arange(s, s + 500),
                top_p=0.95,
            )
            for s in range(0, 5000, 500)
        ]
    )
    # Merge the rare tokens so that every expected count is >= 5 (chi-square's validity).
    order = np.argsort(-p)
    big = order[p[order] * len(ids) >= 5]
    counts = np.bincount(ids, minlength=len(p))
    assert counts[p == 0].sum() == 0
    obs = np.append(counts[big], counts.sum() - counts[big].sum())
    exp = np.append(p[big], 1 - p[big].sum()) * len(ids)
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    assert stat < chi_square_critical(int(keep.sum()) - 1), stat


CASES = [
    dict(),
    dict(top_k=50, top_p=0.95),
    dict(top_p=0.9),
    dict(min_p=0.05, temperature=0.8),
    dict(temperature=0),
    dict(top_k=40, repetition_penalty=1.3),
]


@pytest.mark.parametrize("kw", CASES)
def test_a_seeded_row_gives_the_same_ids_alone_and_anywhere_in_a_batch(kw: dict) -> None:
    rng = np.random.default_rng(13)
    vocab = 5000
    batch = (rng.standard_normal((64, vocab)) * 2).astype(np.float32)
    history = rng.integers(0, vocab, size=(64, 20))
    seeds = rng.integers(0, 2**63, size=64)
    for step in range(25):
        row = batch[0]
        alone = gh.sample(row[None, :], seed=int(seeds[0]), step=step, history=history[:1], **kw)
        batch[63] = row
        seeds[63] = seeds[0]
        history[63] = history[0]
        full = gh.sample(batch, seed=seeds.tolist(), step=step, history=history, **kw)
        assert full[0] == alone[0] == full[63], (step, kw)
        batch[0] = rng.standard_normal(vocab) * 2  # a new row for the next step


def test_seed_sequence_and_step_each_change_the_stream() -> None:
    x = np.zeros((1, 1000), np.float32)
    base = [int(gh.sample(x, seed=1, sequence=0, step=s)[0]) for s in range(20)]
    assert base == [int(gh.sample(x, seed=1, sequence=0, step=s)[0]) for s in range(20)]
    assert base != [int(gh.sample(x, seed=2, sequence=0, step=s)[0]) for s in range(20)]
    assert base != [int(gh.sample(x, seed=1, sequence=1, step=s)[0]) for s in range(20)]
    assert len(set(base)) > 10


def test_the_draw_is_the_inverse_cdf_of_the_philox_uniform() -> None:
    # A uniform row of 1000: the chosen id is floor(u * 1000), u from Philox4x32-10.
    x = np.zeros((1, 1000), np.float32)
    for step in range(50):
        u = _native.philox_uniform(99, 4, step)
        assert gh.sample(x, seed=99, sequence=4, step=step)[0] == int(u * 1000)


def test_unseeded_rows_follow_manual_seed() -> None:
    x = np.zeros((8, 1000), np.float32)
    gh.manual_seed(5)
    a = gh.sample(x)
    b = gh.sample(x)
    gh.manual_seed(5)
    assert gh.sample(x).tolist() == a.tolist()
    assert a.tolist() != b.tolist()
    assert len(set(a.tolist())) > 1  # rows do not share a stream
    # A seeded row is untouched by the global generator.
    gh.manual_seed(6)
    c = gh.sample(x, seed=[1] + [None] * 7)
    gh.manual_seed(7)
    assert gh.sample(x, seed=[1] + [None] * 7)[0] == c[0]


def test_logprobs_describe_the_draw() -> None:
    rng = np.random.default_rng(14)
    x = (rng.standard_normal((6, 300)) * 2).astype(np.float32)
    kw = dict(top_k=30, top_p=0.9, temperature=0.8)
    out = gh.sample(x, seed=3, return_logprobs=True, num_logprobs=5, **kw)
    final = gh.probs(x, **kw)
    raw = x.astype(np.float64) - np.log(np.exp(x.astype(np.float64)).sum(1, keepdims=True))
    rows = np.arange(6)
    assert out.token_ids.tolist() == gh.sample(x, seed=3, **kw).tolist()
    np.testing.assert_allclose(out.logprobs, np.log(final[rows, out.token_ids]), atol=1e-5)
    np.testing.assert_allclose(out.raw_logprobs, raw[rows, out.token_ids], atol=1e-5)
    want_top = np.argsort(-x, axis=1, kind="stable")[:, :5]
    assert out.top_token_ids.tolist() == want_top.tolist()
    np.testing.assert_allclose(out.top_logprobs, np.take_along_axis(raw, want_top, 1), atol=1e-5)
    assert out.top_token_ids.dtype == np.int64 and out.top_logprobs.shape == (6, 5)
    greedy = gh.sample(x, temperature=0, return_logprobs=True)
    assert greedy.logprobs.tolist() == [0.0] * 6 and greedy.top_token_ids.shape == (6, 0)
