import json

import pytest

from transact.data.bench_import import main


@pytest.mark.slow
def test_the_import_benchmark_reports_rows_per_second_and_peak_memory(tmp_path):
    out = tmp_path / "import.json"
    assert main(["--rows", "40000", "--memory-rows", "5000", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    small, full = result["sizes"]
    assert small["rows"] < full["rows"] == result["rows"]
    assert abs(full["rows"] - 40_000) < 4_000  # the generator hits the size roughly
    assert full["rows_per_s"] == pytest.approx(full["rows"] / full["import_s"], rel=0.01)
    for r in (small, full, result["reference_read_all"]):
        assert r["peak_rss_mb"] > 50  # a python with pyarrow loaded
    assert result["goal"] == {"rows_per_s": 1_000_000, "peak_rss_mb": 4096}
    assert result["meets_goal"] == (full["rows_per_s"] >= 1_000_000 and full["peak_rss_mb"] < 4096)
    assert result["ratios"]["peak_full_over_tenth"] > 0
    assert list(tmp_path.iterdir()) == [out]  # the generated log and world are gone
    # its children run under the allocator `transact data import` runs under
    assert result["machine"]["malloc"] in ("tuned", "default")


def test_the_import_children_run_under_the_commands_allocator(monkeypatch):
    from transact.data import bench_import
    from transact.memory import MALLOC_ENV, OPT_OUT_ENV

    keys = list(MALLOC_ENV)
    code = f"import os; print(1 if all(os.environ.get(k) for k in {keys!r}) else 0)"
    monkeypatch.delenv(OPT_OUT_ENV, raising=False)
    assert bench_import._child_malloc() == "tuned"
    assert bench_import._child(code)["seconds"] == 1.0  # the child saw MALLOC_ENV
    monkeypatch.setenv(OPT_OUT_ENV, "default")
    for key in MALLOC_ENV:
        monkeypatch.delenv(key, raising=False)
    assert bench_import._child_malloc() == "default"
    assert bench_import._child(code)["seconds"] == 0.0
