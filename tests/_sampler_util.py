"""Peers and references for the sampler tests.

- ``hf_probs``: Hugging Face's processors and warpers composed as ``generate`` composes them,
  then softmax. They run in float64 so that their cumulative sums carry no float32 noise:
  the comparison is then about semantics, not about rounding at the top-p boundary.
- ``reference_probs``: a slow, obvious numpy version of the same pipeline (a full sort per
  row, ties broken by lower token id), written from the definitions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def hf_probs(
    logits: np.ndarray,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    history: list[list[int]] | None = None,
) -> np.ndarray:
    """softmax(HF processors(logits)) in float64, ``[B, V]``."""
    if history is not None and len({len(h) for h in history}) > 1:
        # HF takes a rectangular [B, L] history: run ragged rows one at a time.
        kw = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        return np.concatenate(
            [
                hf_probs(
                    logits[r : r + 1], repetition_penalty=repetition_penalty, history=[h], **kw
                )
                for r, h in enumerate(history)
            ]
        )
    scores = torch.from_numpy(np.asarray(logits, np.float32)).double()
    procs = LogitsProcessorList()
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(float(repetition_penalty)))
    if temperature == 0:
        ids = torch.as_tensor(history or [[]] * scores.shape[0], dtype=torch.long)
        scores = procs(ids, scores) if len(procs) else scores
        out = torch.zeros_like(scores)
        out[torch.arange(scores.shape[0]), scores.argmax(dim=-1)] = 1.0
        return out.numpy()
    if temperature != 1.0:
        procs.append(TemperatureLogitsWarper(float(temperature)))
    if top_k > 0:
        procs.append(TopKLogitsWarper(int(top_k)))
    if top_p < 1.0:
        procs.append(TopPLogitsWarper(float(top_p)))
    if min_p > 0.0:
        procs.append(MinPLogitsWarper(float(min_p)))
    ids = torch.as_tensor(history or [[]] * scores.shape[0], dtype=torch.long)
    return torch.softmax(procs(ids, scores), dim=-1).numpy()


def reference_probs(
    logits: np.ndarray,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
    history: list[list[int]] | None = None,
) -> np.ndarray:
    """The pipeline from its definitions, one row and one token at a time."""
    out = np.zeros(logits.shape, np.float64)
    for r, row in enumerate(np.asarray(logits, np.float32)):
        x = [float(v) for v in row]
        seen: dict[int, int] = {}
        for t in history[r] if history else []:
            if t < len(x):
                seen[t] = seen.get(t, 0) + 1
        for t, count in seen.items():
            if x[t] < 0:
                x[t] *= repetition_penalty
            else:
                x[t] /= repetition_penalty
            x[t] -= frequency_penalty * count + presence_penalty
        order = sorted(range(len(x)), key=lambda i: (-x[i], i))  # rank order
        if temperature == 0:
            out[r, order[0]] = 1.0
            continue
        top = x[order[0]]
        weight = {i: math.exp((x[i] - top) / temperature) for i in order}
        kept = order
        if 0 < top_k < len(x):
            kth = x[order[top_k - 1]]
            kept = [i for i in kept if x[i] >= kth]
        if top_p < 1.0:
            total = sum(weight[i] for i in kept)
            mass, prefix = 0.0, []
            for i in kept:
                prefix.append(i)
                mass += weight[i]
                if mass >= top_p * total:
                    break
            kept = prefix
        if min_p > 0.0:
            kept = [i for i in kept if weight[i] >= min_p]  # weight of the top token is 1
        total = sum(weight[i] for i in kept)
        for i in kept:
            out[r, i] = weight[i] / total
    return out


def assert_same_distribution(
    ours: np.ndarray, theirs: np.ndarray, *, exact_support: bool = True, what: str = ""
) -> None:
    """Same surviving tokens (probability > 1e-30) and the same probabilities.

    With ``exact_support=False`` only the sorted probabilities of each row are compared:
    for top-p boundaries inside a group of equal logits, where Hugging Face keeps an
    arbitrary subset of the group (its sort is not stable) and we keep the lower ids.
    """
    assert ours.shape == theirs.shape, what
    for r in range(ours.shape[0]):
        a, b = ours[r].astype(np.float64), theirs[r].astype(np.float64)
        if exact_support:
            sa, sb = set(np.flatnonzero(a > 1e-30)), set(np.flatnonzero(b > 1e-30))
            assert sa == sb, (
                f"{what} row {r}: only ours {sorted(sa - sb)[:10]}, "
                f"only theirs {sorted(sb - sa)[:10]}"
            )
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-7, err_msg=f"{what} row {r}")
        else:
            pa, pb = np.sort(a[a > 1e-30]), np.sort(b[b > 1e-30])
            assert len(pa) == len(pb), f"{what} row {r}: {len(pa)} tokens kept, theirs {len(pb)}"
            np.testing.assert_allclose(pa, pb, rtol=2e-4, atol=1e-7, err_msg=f"{what} row {r}")
        assert abs(a.sum() - 1.0) < 1e-5, f"{what} row {r} sums to {a.sum()}"


def chi_square_critical(df: int) -> float:
    """The 0.999 quantile of chi-square with ``df`` degrees of freedom (Wilson–Hilferty)."""
    z = 3.090232  # the 0.999 quantile of the standard normal
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
