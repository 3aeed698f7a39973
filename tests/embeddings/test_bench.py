"""The generation benchmark (transact.embeddings.bench) runs on a tiny synthetic set."""

import json

from transact.embeddings.bench import main


def test_generation_benchmark_reports_both_paths(tmp_path) -> None:
    out = tmp_path / "gen.json"
    argv = ["--users", "120", "--reference-users", "30", "--items", "400", "--median-len", "8",
            "--shards", "2", "--batch-size", "64", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["users"] == 120 and result["users_written"] == 120
    assert result["max_abs_diff_fast_vs_reference"] < 1e-4  # the fast path is exact
    assert result["generate_users_per_s"] > 0 and result["speedup_fast_vs_reference"] > 0
