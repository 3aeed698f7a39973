import io
import json
import sys

import pytest

from tests.features.event_logs import T0, make_events, write_world
from transact.cli import build_parser, main
from transact.features.events import event_to_json
from transact.features.reader import SequenceReader
from transact.features.store import RocksDBSequenceStore


@pytest.mark.parametrize("cmd", ["run", "produce", "bench", "broker"])
def test_help_teaches_with_examples(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["stream", cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"transact stream {cmd}" in out


def test_run_from_parquet_then_stdin_into_one_store(tmp_path, capsys, monkeypatch):
    events = make_events(500, n_users=5, seed=1)
    world = write_world(str(tmp_path / "w"), [events])
    store, dlq = str(tmp_path / "seq"), str(tmp_path / "dlq.jsonl")
    base = ["stream", "run", "--store", store, "--dead-letters", dlq, "--no-progress"]
    assert main([*base, "--source", f"parquet:{world}", "--batch-size", "128"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n_impressions = sum(a == "impression" for a in events.column("action_type").to_pylist())
    assert summary["events"] == 500 and 0 < n_impressions < 500
    assert summary["outcomes"]["accepted"] == 500 - n_impressions  # default: engagements only
    assert summary["outcomes"]["filtered_action"] == n_impressions
    lines = [event_to_json("new-x", 1, 3, "click", T0 + 4_000_000), b"not json", b'{"event_id": 1}']
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n")))
    assert main([*base, "--source", "stdin"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["outcomes"] == {
        "accepted": 1,
        "duplicate_content": 0,
        "duplicate_event_id": 0,
        "filtered_action": 0,
        "invalid": 2,
        "late": 0,
    }
    with open(dlq) as f:
        reasons = sorted(json.loads(x)["reason"] for x in f)
    assert reasons == ["malformed_json", "missing_field"]
    s = RocksDBSequenceStore(store)
    assert s.offsets() == {"replay": 500, "stdin": 3}
    seq = SequenceReader(s).fetch([1], [T0 + 5_000_000])
    assert int(seq.action_item_ids[0, 0]) == 3 and int(seq.action_times_ms[0, 0]) == T0 + 4_000_000
    s.close()


def test_bad_source_is_a_usage_error(tmp_path, capsys):
    assert main(["stream", "run", "--source", "ftp://x", "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "argument --source: 'ftp://x': expected parquet:PATH, stdin or kafka:TOPIC" in err


def test_metrics_port_exports_the_counters(tmp_path, capsys, monkeypatch):
    import urllib.request

    from transact.features.kafka import free_port

    port = free_port()
    lines = [event_to_json(f"p{i}", 1, i, "click", T0 + i) for i in range(5)] + [b"{bad"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n")))
    args = ["stream", "run", "--source", "stdin", "--store", str(tmp_path / "s")]
    assert main([*args, "--dead-letters", "", "--no-progress", "--metrics-port", str(port)]) == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'transact_stream_dead_letters_total{reason="malformed_json"}' in text
    accepted = [
        x
        for x in text.splitlines()
        if x.startswith('transact_stream_events_total{outcome="accepted"}')
    ]
    assert accepted and float(accepted[0].split()[-1]) >= 5
    assert "transact_stream_batch_seconds_bucket" in text


def test_operator_flags_default_to_the_configs(tmp_path, capsys) -> None:
    """The operator's flags (shared with the PyFlink job) leave every rule at its config's
    default unless given; the defaults the help text shows are the configs'."""
    from transact.features.events import ValidationConfig
    from transact.features.flags import configs_from_args
    from transact.features.processor import ProcessorConfig

    parser = build_parser()
    base = ["stream", "run", "--source", "stdin", "--store", str(tmp_path / "s")]
    validation, processor = configs_from_args(parser.parse_args(base))
    assert processor == ProcessorConfig() and validation == ValidationConfig()
    args = parser.parse_args([*base, "--seq-len", "7", "--include-actions", "all",
                              "--max-future-ms", "5", "--n-items", "9"])  # fmt: skip
    validation, processor = configs_from_args(args)
    assert processor.capacity == 7 and processor.include_actions is None
    assert validation.max_future_ms == 5 and validation.n_items == 9
    assert main([*base[:2], "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in (
        ProcessorConfig().capacity,
        ProcessorConfig().allowed_lateness_ms,
        ProcessorConfig().dedup_window_ms,
        ValidationConfig().max_future_ms,
    ):
        assert f"(default {default}" in text
    assert ",".join(ProcessorConfig().include_actions or ()) in text
