"""``transact bench train``'s library (``pipeline/benchmark.py``) on a fake example set: the
arms train from the same weights on the same batches, and the figures it reports hold."""

import json

import numpy as np
import pytest
import torch
from tests.fakes import FakeExampleSet

from transact.memory import malloc_state
from transact.pipeline import benchmark


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_section_reports_every_arm_and_a_deterministic_match():
    data = FakeExampleSet(n=96, seq_len=12)
    r = benchmark.bench_training(
        "transact", data, steps=2, warmup=1, batch_size=32, bf16=False, compile_arm=False,
        peak_gflops=10.0,
    )  # fmt: skip
    assert set(r["arms"]) == {"plain", "fast"}
    assert r["steps_timed"] == 2 and r["plain_step_gflop"] > 0
    plain, fast = r["arms"]["plain"], r["arms"]["fast"]
    assert plain["speedup"] == pytest.approx(1.0)
    assert fast["examples_per_s"] > 0 and fast["share_of_gemm_peak"] > 0
    # dropout draws differ between the paths, the loss only slightly after 3 steps
    assert fast["max_loss_diff_vs_plain"] < 0.05
    det = r["deterministic"]
    assert det["dropout"] == 0.0 and det["steps"] == 3
    assert det["max_loss_diff"] < 1e-5 and det["max_param_diff"] < 1e-4


def test_scoring_section_cuts_at_a_request_boundary_and_scores_alike():
    data = FakeExampleSet(n=120, seq_len=12, items_per_request=10)
    data.example_request = data.request_ids.numpy()
    r = benchmark.bench_scoring("transact", data, data, max_examples=35, repeats=1)
    assert r["examples"] == 40 and r["requests"] == 4  # whole requests: 35 rounds up to 40
    assert r["max_prob_diff"] < 1e-5
    assert r["plain_examples_per_s"] > 0 and r["fast_examples_per_s"] > 0


def test_scoring_cut_does_not_assume_sorted_request_ids():
    """A real evaluation set's request ids are contiguous per request but not ascending
    (the demo world's are not): the cut still keeps whole requests, as many as asked."""
    data = FakeExampleSet(n=120, seq_len=12, items_per_request=10)
    ids = data.request_ids.numpy()
    data.example_request = (11 - ids) * 7  # descending: searchsorted would cut at 10 rows
    r = benchmark.bench_scoring("transact", data, data, max_examples=35, repeats=1)
    assert r["examples"] == 40 and r["requests"] == 4


def test_run_writes_json_with_the_machine(tmp_path, monkeypatch):
    data = FakeExampleSet(n=64, seq_len=8)
    data.example_request = data.request_ids.numpy()
    monkeypatch.setattr(benchmark, "prepare_data", lambda _d: (data, data))
    monkeypatch.setattr(benchmark, "gemm_peak_gflops", lambda: 10.0)
    path = tmp_path / "b.json"
    benchmark.run(
        path, threads=1, steps=1, warmup=0, batch_size=32, bf16=False, score_examples=20,
        score_repeats=1, report=lambda _s: None,
    )  # fmt: skip
    out = json.loads(path.read_text())
    assert out["machine"]["threads"] == 1 and out["fp32_gemm_peak_gflops"] == 10.0
    assert out["machine"]["malloc"] == malloc_state()  # both arms ran under it
    assert out["training"]["transact"]["arms"]["fast"]["speedup"] > 0
    assert out["scoring"]["transact"]["examples"] == 20
    assert np.isfinite(out["scoring"]["transact"]["speedup"])


def test_cli_rejects_an_unknown_encoder(capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(["--json", "x.json", "--encoders", "transact,gru"])
    assert exc.value.code == 2
    assert "unknown encoder(s) ['gru']" in capsys.readouterr().err


def test_transact_bench_train_is_registered_with_the_library_flags(capsys):
    from transact.cli import main

    assert main(["bench", "train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--encoders" in out and "--score-examples" in out and "examples:" in out
