"""gh.SamplingParams: defaults, validation, from_dict / to_dict."""

from __future__ import annotations

import json

import gpt_hybrid as gh
import numpy as np
import pytest


def test_defaults_switch_every_filter_off() -> None:
    p = gh.SamplingParams()
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (1.0, 0, 1.0, 0.0)
    assert (p.repetition_penalty, p.presence_penalty, p.frequency_penalty) == (1.0, 0.0, 0.0)
    assert p.seed is None and p.stop == [] and p.stop_token_ids == [] and p.logprobs is None
    assert p.num_return_sequences == 1 and not p.ignore_eos and not p.greedy


@pytest.mark.parametrize(
    "kw,error",
    [
        (dict(top_p=0), ValueError),
        (dict(top_p=1.5), ValueError),
        (dict(top_k=-1), ValueError),
        (dict(top_k=2.5), TypeError),
        (dict(temperature=-1), ValueError),
        (dict(min_p=2), ValueError),
        (dict(repetition_penalty=0), ValueError),
        (dict(presence_penalty=2.5), ValueError),
        (dict(frequency_penalty=float("inf")), ValueError),
        (dict(seed=-5), ValueError),
        (dict(seed=2**64), ValueError),
        (dict(max_new_tokens=-1), ValueError),
        (dict(num_return_sequences=0), ValueError),
        (dict(logprobs=-2), ValueError),
        (dict(stop=[""]), ValueError),
        (dict(stop=[1]), TypeError),
        (dict(stop_token_ids=[-1]), ValueError),
        (dict(ignore_eos="yes"), TypeError),
        (dict(top_k=True), TypeError),
    ],
)
def test_bad_values_are_refused_when_built(kw: dict, error: type) -> None:
    with pytest.raises(error, match=next(iter(kw))):
        gh.SamplingParams(**kw)


def test_values_are_normalised() -> None:
    p = gh.SamplingParams(temperature=1, top_k=np.int64(5), stop="\n", stop_token_ids=(50256,))
    assert p.temperature == 1.0 and isinstance(p.temperature, float)
    assert p.top_k == 5 and type(p.top_k) is int
    assert p.stop == ["\n"] and p.stop_token_ids == [50256]
    assert gh.SamplingParams(temperature=0.0).greedy


def test_from_dict_round_trips_through_json_and_rejects_unknown_keys() -> None:
    p = gh.SamplingParams(top_k=40, top_p=0.9, seed=3, stop=["END"], logprobs=2)
    assert gh.SamplingParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="unknown sampling parameter.*max_tokens"):
        gh.SamplingParams.from_dict({"max_tokens": 5})
    with pytest.raises(ValueError, match="top_p"):
        gh.SamplingParams.from_dict({"top_p": 7})


def test_params_drive_sample() -> None:
    x = (np.random.default_rng(0).standard_normal((3, 200)) * 2).astype(np.float32)
    ps = [
        gh.SamplingParams(top_k=5, seed=1),
        gh.SamplingParams(temperature=0),
        gh.SamplingParams(top_p=0.5, seed=2),
    ]
    fields = ("temperature", "top_k", "top_p", "min_p")
    ids = gh.sample(
        x, **{f: [getattr(p, f) for p in ps] for f in fields}, seed=[p.seed for p in ps]
    )
    assert ids[1] == x[1].argmax()
    assert ids[0] in np.argsort(-x[0])[:5]
