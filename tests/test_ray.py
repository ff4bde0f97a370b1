"""The Ray Data integration: the callable on its own (fast), then one run on a local Ray."""

from __future__ import annotations

import builtins
import pickle
import time

import gpt_hybrid as gh
import numpy as np
import pytest
from gpt_hybrid.integrations.ray import OUTPUT_COLUMNS, GenerateCompletions, require_ray


@pytest.fixture(scope="module")
def fn() -> GenerateCompletions:
    return GenerateCompletions(max_new_tokens=6, batch_invariant=True)


def alone(prompt: str, **params) -> str:
    gen = gh.Generator.default(batch_invariant=True)
    return gen.generate(prompt, **params)[0].text


def test_columns_and_usage(fn):
    batch = {"prompt": np.array(["Hello", "The sky is"]), "id": np.array([7, 8])}
    out = fn(batch)
    assert list(out["id"]) == [7, 8]
    assert list(out["prompt"]) == ["Hello", "The sky is"]
    for name in OUTPUT_COLUMNS:
        assert len(out[name]) == 2
    assert out["error"] == [None, None]
    assert out["completion_tokens"] == [6, 6]
    assert all(r in ("stop", "length") for r in out["finish_reason"])
    assert all(isinstance(t, int) and t > 0 for t in out["prompt_tokens"])


def test_seeded_row_matches_generate_alone(fn):
    batch = {
        "prompt": np.array(["Once upon a time", "Hello", "The"]),
        "seed": np.array([3, 4, 5]),
        "temperature": np.array([0.8, 1.0, 0.7]),
        "top_k": np.array([20, 0, 5]),
        "max_new_tokens": np.array([5, 9, 3]),
    }
    out = fn(batch)
    assert out["completion"][0] == alone(
        "Once upon a time", seed=3, temperature=0.8, top_k=20, max_new_tokens=5
    )
    assert out["completion"][2] == alone("The", seed=5, temperature=0.7, top_k=5, max_new_tokens=3)
    assert out["completion_tokens"][1] <= 9


def test_failing_rows_get_errors_rest_completes(fn):
    batch = {
        "prompt": np.array(["ok", "x" * 5000, "", "fine too", "also"], dtype=object),
        "top_p": np.array([1.0, 1.0, 1.0, 0.0, np.nan]),  # NaN: the row has no value, default
    }
    out = fn(batch)
    err = out["error"]
    assert err[0] is None and err[4] is None
    assert "context window" in err[1]
    assert "empty" in err[2]
    assert "top_p" in err[3]
    assert out["completion"][0] is not None and out["completion"][4] is not None
    assert out["completion"][1] is None and out["finish_reason"][3] is None


def test_token_id_prompts_and_bad_ids(fn):
    out = fn({"prompt": np.array([[464, 3290], [10**9]], dtype=object)})
    assert out["error"][0] is None and out["prompt_tokens"][0] == 2
    assert "outside" in out["error"][1]


def test_missing_prompt_column(fn):
    with pytest.raises(KeyError, match="prompt"):
        fn({"text": np.array(["a"])})


def test_bad_defaults_fail_at_construction():
    with pytest.raises(ValueError):
        GenerateCompletions(top_p=0.0)
    with pytest.raises(ValueError, match="one completion"):
        GenerateCompletions(num_return_sequences=2)


def test_picklable():
    obj = pickle.loads(pickle.dumps(GenerateCompletions))
    assert obj is GenerateCompletions
    fn = pickle.loads(pickle.dumps(GenerateCompletions(max_new_tokens=2)))
    assert fn({"prompt": np.array(["Hi"])})["error"] == [None]


def test_require_ray_message(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"gpt-hybrid\[ray\]"):
        require_ray()


def test_ray_data_200_prompts_two_actors():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    t0 = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        words = ["The", "Once upon a time", "Hello", "In the", "A cat"]
        items = [
            {"id": i, "prompt": f"{words[i % 5]} {i}", "seed": i, "temperature": 0.9}
            for i in range(200)
        ]
        ds = ray.data.from_items(items).map_batches(
            GenerateCompletions,
            fn_constructor_kwargs={"max_new_tokens": 4, "batch_invariant": True},
            concurrency=2,
            batch_size=25,
        )
        rows = ds.take_all()
    finally:
        ray.shutdown()
    ids = sorted(r["id"] for r in rows)
    assert ids == list(range(200))  # every row answered exactly once
    assert all(r["error"] is None for r in rows)
    by_id = {r["id"]: r for r in rows}
    for i in (0, 137):
        expect = alone(items[i]["prompt"], seed=i, temperature=0.9, max_new_tokens=4)
        assert by_id[i]["completion"] == expect
    assert time.monotonic() - t0 < 60
