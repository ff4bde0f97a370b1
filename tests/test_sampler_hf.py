"""The sampler's final distribution against Hugging Face's warpers and a slow reference."""

from __future__ import annotations

import itertools

import gpt_hybrid as gh
import numpy as np
import pytest
from _sampler_util import assert_same_distribution, hf_probs, reference_probs

GRID = list(
    itertools.product(
        [0.6, 1.0, 1.7],  # temperature
        [0, 1, 40, 1500],  # top_k
        [1.0, 0.9, 0.5, 1e-9],  # top_p
        [0.0, 0.05, 0.5],  # min_p
    )
)


def _rows(rng: np.random.Generator, rows: int, vocab: int, scale: float) -> np.ndarray:
    return (rng.standard_normal((rows, vocab)) * scale).astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_random_logits_match_hugging_face_over_the_parameter_grid(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 10))
    for n, (temperature, top_k, top_p, min_p) in enumerate(GRID):
        x = _rows(rng, 3, 2000, scale)
        kw = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        if n % 3 == 0:
            kw["repetition_penalty"] = 1.3
            kw["history"] = rng.integers(0, 2000, size=(3, 50)).tolist()
        ours = gh.probs(x, **kw)
        assert_same_distribution(ours, hf_probs(x, **kw), what=str(kw))


@pytest.mark.parametrize(
    "kw",
    [
        dict(top_k=50, top_p=0.95),
        dict(top_p=0.9),
        dict(min_p=0.05),
        dict(top_p=0.99, temperature=0.8),
        dict(),
        dict(temperature=0),
        dict(top_k=50, top_p=0.9, min_p=0.1, repetition_penalty=1.2),
    ],
)
def test_gpt2_sized_rows_match_hugging_face(kw: dict) -> None:
    rng = np.random.default_rng(1)
    # Logits shaped like a language model's: a heavy tail over 50257 tokens.
    x = (rng.standard_normal((4, 50257)) * 2.5 + rng.gumbel(size=(4, 50257))).astype(np.float32)
    if "repetition_penalty" in kw:
        kw = dict(kw, history=rng.integers(0, 50257, size=(4, 200)).tolist())
    assert_same_distribution(gh.probs(x, **kw), hf_probs(x, **kw), what=str(kw))


def test_per_row_parameters_match_each_row_alone() -> None:
    rng = np.random.default_rng(2)
    x = _rows(rng, 4, 500, 3.0)
    rows = [
        dict(temperature=0.5, top_k=5, top_p=1.0, min_p=0.0),
        dict(temperature=1.0, top_k=0, top_p=0.8, min_p=0.0),
        dict(temperature=1.3, top_k=0, top_p=1.0, min_p=0.2),
        dict(temperature=0.0, top_k=3, top_p=0.5, min_p=0.0),
    ]
    batched = {k: [r[k] for r in rows] for k in rows[0]}
    ours = gh.probs(x, **batched)
    for r, kw in enumerate(rows):
        assert_same_distribution(ours[r : r + 1], hf_probs(x[r : r + 1], **kw), what=str(kw))


def _adversarial_rows() -> list[tuple[str, np.ndarray]]:
    v = 64
    ties = np.full(v, -3.0, np.float32)
    ties[[5, 9, 20, 33, 40]] = 2.0  # a group tied at the k-th value for k = 2..4
    ties[17] = 4.0
    with_inf = np.random.default_rng(3).standard_normal(v).astype(np.float32)
    with_inf[::2] = -np.inf
    huge = np.random.default_rng(4).standard_normal(v).astype(np.float32)
    huge[[3, 30]] = 1e30
    huge[[7, 8, 50]] = -1e30
    huge_neg = np.random.default_rng(5).standard_normal(v).astype(np.float32) - 1e30
    one_finite = np.full(v, -np.inf, np.float32)
    one_finite[63] = -7.0
    zeros = np.zeros(v, np.float32)
    zeros[[1, 2]] = -0.0
    return [
        ("ties at the k-th", ties),
        ("all equal", np.full(v, 0.25, np.float32)),
        ("-inf entries", with_inf),
        ("+-1e30", huge),
        ("all near -1e30", huge_neg),
        ("one finite", one_finite),
        ("signed zeros", zeros),
    ]


ADVERSARIAL_PARAMS = [
    dict(top_k=k, top_p=p, min_p=m, temperature=t)
    for k, p, m, t in itertools.product(
        [0, 1, 2, 3, 4, 6, 40, 64, 100], [1.0, 0.7, 1e-9], [0.0, 0.3, 1.0], [1.0, 0.3]
    )
]


@pytest.mark.parametrize(
    "name,row", _adversarial_rows(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_adversarial_rows_match_hugging_face_and_the_reference(name: str, row: np.ndarray) -> None:
    x = row[None, :]
    for kw in ADVERSARIAL_PARAMS:
        ours = gh.probs(x, **kw)
        # The reference breaks ties by lower id, as we do: the support must be identical.
        assert_same_distribution(ours, reference_probs(x, **kw), what=f"{name} {kw} vs reference")
        # Hugging Face keeps every tie at the k-th value too, but picks an arbitrary subset
        # of a tie group cut by the top-p boundary: there, compare the kept probabilities.
        assert_same_distribution(
            ours, hf_probs(x, **kw), exact_support=kw["top_p"] == 1.0, what=f"{name} {kw} vs HF"
        )


def test_top_p_boundary_inside_a_tie_group_keeps_the_lower_ids() -> None:
    x = np.zeros((1, 10), np.float32)
    p = gh.probs(x, top_p=0.55)
    assert np.flatnonzero(p[0]).tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(p[0, :6], 1 / 6, rtol=1e-6)
    hf = hf_probs(x, top_p=0.55)
    assert (hf[0] > 0).sum() == 6


def test_top_k_keeps_every_tie_with_the_kth_value() -> None:
    x = np.array([[1.0, 3.0, 2.0, 2.0, 2.0, 0.0]], np.float32)
    p = gh.probs(x, top_k=2)
    assert np.flatnonzero(p[0]).tolist() == [1, 2, 3, 4]
    assert_same_distribution(p, hf_probs(x, top_k=2))


def test_penalties_match_the_reference() -> None:
    rng = np.random.default_rng(6)
    x = _rows(rng, 3, 300, 2.0)
    history = [[1, 1, 1, 5, 299, 7000], [], list(range(0, 300, 3)) * 2]
    for kw in [
        dict(repetition_penalty=1.5),
        dict(repetition_penalty=0.7, presence_penalty=0.5),
        dict(frequency_penalty=0.4, presence_penalty=-0.2, top_k=20),
        dict(repetition_penalty=1.2, frequency_penalty=-0.5, top_p=0.8, temperature=0.7),
    ]:
        ours = gh.probs(x, history=history, **kw)
        assert_same_distribution(ours, reference_probs(x, history=history, **kw), what=str(kw))
        if set(kw) <= {"repetition_penalty", "top_k", "top_p", "temperature"}:
            assert_same_distribution(ours, hf_probs(x, history=history, **kw), what=str(kw))


def test_greedy_matches_argmax_of_the_penalised_logits() -> None:
    rng = np.random.default_rng(7)
    x = _rows(rng, 16, 1000, 3.0)
    history = rng.integers(0, 1000, size=(16, 30))
    ids = gh.sample(x, temperature=0, repetition_penalty=1.4, history=history)
    want = hf_probs(x, temperature=0, repetition_penalty=1.4, history=history.tolist()).argmax(1)
    assert ids.dtype == np.int64
    assert ids.tolist() == want.tolist()


def _bigram_logits(corpus_dir, rows: int = 24, vocab: int = 4000) -> np.ndarray:
    """Next-word log-probabilities from word bigram counts of real English text: rows with
    the heavy, tied-heavy tails of a language model (many equal smoothed counts)."""
    text = (corpus_dir / "english" / "austen_emma.txt").read_text(encoding="utf-8")[:600_000]
    words = text.lower().split()
    top, _ = np.unique(words, return_counts=True)
    freq = {w: c for w, c in zip(*np.unique(words, return_counts=True), strict=True)}
    top = sorted(top, key=lambda w: -freq[w])[:vocab]
    index = {w: i for i, w in enumerate(top)}
    ids = np.array([index.get(w, -1) for w in words])
    pairs = np.stack([ids[:-1], ids[1:]], 1)
    pairs = pairs[(pairs >= 0).all(1)]
    counts = np.zeros((rows, vocab), np.float64)
    # Rows: the most frequent preceding words ("the", "to", "of", ...), i.e. real contexts.
    sel = pairs[pairs[:, 0] < rows]
    np.add.at(counts, (sel[:, 0], sel[:, 1]), 1.0)
    return np.log(counts + 0.5).astype(np.float32)


@pytest.mark.parametrize(
    "kw",
    [
        dict(top_k=50, top_p=0.95),
        dict(top_p=0.9),
        dict(min_p=0.05),
        dict(top_k=10),
        dict(temperature=0.7, top_p=0.8, min_p=0.02),
        dict(repetition_penalty=1.3, top_p=0.9),
    ],
)
def test_next_word_distributions_of_real_text_match_hugging_face(corpus_dir, kw: dict) -> None:
    x = _bigram_logits(corpus_dir)
    if "repetition_penalty" in kw:
        kw = dict(kw, history=[list(range(r, r + 40)) for r in range(x.shape[0])])
    ours = gh.probs(x, **kw)
    theirs = hf_probs(x, **kw)
    reference = reference_probs(x, **kw)
    for r in range(x.shape[0]):
        row = slice(r, r + 1)
        if _top_p_boundary_is_a_rounding_tie(x[row], kw, ours[r], theirs[r]):
            continue
        # Smoothed counts tie heavily (every unseen word has the same logit): where top-p
        # cuts inside such a group, HF keeps an arbitrary subset of it, so compare the
        # kept probabilities with HF, and the exact set with the reference.
        what = f"{kw} row {r}"
        assert_same_distribution(ours[row], theirs[row], exact_support=False, what=what)
        assert_same_distribution(ours[row], reference[row], what=f"{what} vs reference")


def _top_p_boundary_is_a_rounding_tie(
    x: np.ndarray, kw: dict, ours: np.ndarray, theirs: np.ndarray
) -> bool:
    """Whether the two kept sets differ by one token whose inclusion float32 cannot decide:
    the exact mass before it is within 1e-6 of top_p (the weights are float32 exps)."""
    n_ours, n_theirs = int((ours > 0).sum()), int((theirs > 1e-30).sum())
    if abs(n_ours - n_theirs) != 1 or kw.get("top_p", 1.0) == 1.0 or kw.get("min_p", 0.0):
        return False
    before = hf_probs(x, **dict(kw, top_p=1.0))[0]
    mass = np.cumsum(np.sort(before)[::-1])
    return abs(mass[min(n_ours, n_theirs) - 1] - kw["top_p"]) < 1e-6
