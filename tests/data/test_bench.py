"""The sequence-builder benchmark (transact.data.bench) runs and its paths agree."""

import json

from transact.data.bench import main


def test_sequence_builder_benchmark_writes_agreeing_figures(tmp_path, capsys) -> None:
    out = tmp_path / "bench" / "seq.json"
    argv = ["--events", "3000", "--users", "40", "--queries", "700", "--reference-queries",
            "60", "--seq-len", "12", "--d-item", "4", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0  # 1 when the fast builder and the reference disagree
    result = json.loads(out.read_text())
    assert result["reference_agrees"] is True
    assert result["queries"] == 700 and result["seq_len"] == 12
    assert result["fast_queries_per_s_one_int64_fetch_incl_sort"] > 0
    assert main([*argv[:-1], str(tmp_path)]) == 2  # --json a directory: one line, exit 2
    assert "argument --json" in capsys.readouterr().err
