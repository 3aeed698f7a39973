"""Bad command lines end in one line on stderr that names the argument or file, exit 2.

Every sub-command gets its share of the classes of mistake: a missing path, a directory
where a file is expected and the reverse, an output that cannot be written, a wrong type
or an out-of-range number, an empty directory, bad TOML, a binary file, an unknown
``--set`` key or preset, a bad date. Each case fails at validation (argument types, paths,
config files), before any training, serving or network work, so the list runs in seconds
in-process. ``{tmp}`` is a directory laid out by :func:`make_inputs`.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from transact.cli import main

# (case id, command line after `transact`, a text the error line must contain)
CASES: list[tuple[str, str, str]] = [
    # data generate | stats | prepare | import
    ("data-generate-config-missing", "data generate --out {tmp}/w --config {tmp}/missing.toml", "missing.toml"),
    ("data-generate-config-bad-toml", "data generate --out {tmp}/w --config {tmp}/bad.toml", "bad.toml"),
    ("data-generate-config-binary", "data generate --out {tmp}/w --config {tmp}/binary.toml", "binary.toml"),
    ("data-generate-config-unknown-field", "data generate --out {tmp}/w --config {tmp}/world_unknown.toml", "nosuch"),
    ("data-generate-config-wrong-type", "data generate --out {tmp}/w --config {tmp}/world_wrong_type.toml", "n_users"),
    ("data-generate-config-is-dir", "data generate --out {tmp}/w --config {tmp}/empty", "--config"),
    ("data-generate-out-is-file", "data generate --out {tmp}/file.txt --preset tiny", "--out"),
    ("data-generate-out-under-file", "data generate --out {tmp}/file.txt/w --preset tiny", "--out"),
    ("data-generate-bad-preset", "data generate --out {tmp}/w --preset nope", "nope"),
    ("data-generate-negative-users", "data generate --out {tmp}/w --preset tiny --users -5", "--users"),
    ("data-generate-zero-days", "data generate --out {tmp}/w --preset tiny --days 0 0 0", "--days"),
    ("data-stats-missing-dir", "data stats {tmp}/missing", "missing"),
    ("data-stats-empty-dir", "data stats {tmp}/empty", "empty"),
    ("data-stats-file", "data stats {tmp}/file.txt", "file.txt"),
    ("data-stats-json-under-file", "data stats {tmp}/empty --json {tmp}/file.txt/s.json", "--json"),
    ("data-stats-seq-len-zero", "data stats {tmp}/empty --seq-len 0", "--seq-len"),
    ("data-prepare-missing", "data prepare {tmp}/missing --split train", "missing"),
    ("data-prepare-empty", "data prepare {tmp}/empty --split eval", "empty"),
    ("data-prepare-out-is-file", "data prepare {tmp}/empty --split train --out {tmp}/file.txt", "--out"),
    ("data-prepare-negative-ratio", "data prepare {tmp}/empty --split train --negative-ratio -1", "--negative-ratio"),
    ("data-prepare-seq-len-zero", "data prepare {tmp}/empty --split train --seq-len 0", "--seq-len"),
    ("data-prepare-bad-split", "data prepare {tmp}/empty --split test", "--split"),
    ("data-import-missing-path", "data import movielens --path {tmp}/missing --out {tmp}/ml", "missing"),
    ("data-import-no-source", "data import --path {tmp}/missing.csv", "invalid choice"),
    ("data-import-events-missing", "data import events --path {tmp}/missing.csv --out {tmp}/lg", "missing.csv"),
    ("data-import-events-empty", "data import events --path {tmp}/empty.csv --out {tmp}/lg", "empty.csv"),
    ("data-import-bad-rating-map", "data import movielens --path {tmp}/empty --out {tmp}/ml --rating-map garbage", "--rating-map"),
    ("data-import-out-is-file", "data import impressions --path {tmp}/file.txt --out {tmp}/file.txt --labels a=b", "--out"),
    ("data-import-d-item-zero", "data import events --path {tmp}/file.txt --out {tmp}/lg --d-item 0", "--d-item"),
    ("data-import-impressions-no-labels", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv", "--labels"),
    ("data-import-impressions-bad-labels", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv --labels =like", "--labels"),
    ("data-import-impressions-labels-twice", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv --labels a=like,b=like", "--labels"),
    ("data-import-impressions-label-not-binary", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv --labels is_like=like --item-repr genre", "labels.csv"),
    ("data-import-impressions-missing-column", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv --labels is_follow=follow", "is_follow"),
    ("data-import-impressions-negative-not-a-label", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv --labels is_like=like --negative dislike", "dislike"),
    ("data-import-bad-item-repr", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv --labels is_like=like --item-repr learned:svd", "--item-repr"),
    ("data-import-text-without-items", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv --labels is_like=like --text-cols title", "--items-path"),
    ("data-import-history-negative", "data import impressions --path {tmp}/labels.csv --out {tmp}/sv --labels is_like=like --history-days -1", "--history-days"),
    ("data-import-eval-fraction-zero", "data import events --path {tmp}/labels.csv --out {tmp}/sv --eval-fraction 0", "--eval-fraction"),
    ("data-import-window-negative", "data import events --path {tmp}/labels.csv --out {tmp}/sv --window-min -5", "--window-min"),
    ("data-import-memory-rows-zero", "data import events --path {tmp}/labels.csv --out {tmp}/sv --memory-rows 0", "--memory-rows"),
    ("data-import-items-path-missing", "data import events --path {tmp}/labels.csv --out {tmp}/sv --items-path {tmp}/missing.csv", "missing.csv"),
    # stream run | produce | broker | bench
    ("stream-run-bad-source", "stream run --source bogus --store {tmp}/s.rdb --dead-letters ''", "--source"),
    ("stream-run-parquet-missing", "stream run --source parquet:{tmp}/missing --store {tmp}/s.rdb", "missing"),
    ("stream-run-parquet-empty", "stream run --source parquet:{tmp}/empty --store {tmp}/s.rdb", "empty"),
    ("stream-run-seq-len-zero", "stream run --source stdin --store {tmp}/s.rdb --seq-len 0", "--seq-len"),
    ("stream-run-bad-actions", "stream run --source stdin --store {tmp}/s.rdb --include-actions bogus", "bogus"),
    ("stream-run-store-under-file", "stream run --source stdin --store {tmp}/file.txt/seq.rdb", "--store"),
    ("stream-run-store-is-file", "stream run --source stdin --store {tmp}/file.txt", "--store"),
    ("stream-run-dead-letters-is-dir", "stream run --source stdin --store {tmp}/s.rdb --dead-letters {tmp}/empty", "--dead-letters"),
    ("stream-run-metrics-port", "stream run --source stdin --store {tmp}/s.rdb --metrics-port 99999", "--metrics-port"),
    ("stream-run-batch-size-zero", "stream run --source stdin --store {tmp}/s.rdb --batch-size 0", "--batch-size"),
    ("stream-run-negative-lateness", "stream run --source stdin --store {tmp}/s.rdb --allowed-lateness-ms -1", "--allowed-lateness-ms"),
    ("stream-run-shards-zero", "stream run --source kafka:events --store shards://{tmp}/sh:0", "shards"),
    ("stream-produce-missing-events", "stream produce --events {tmp}/missing --bootstrap 127.0.0.1:1", "missing"),
    ("stream-produce-negative-rate", "stream produce --events {tmp}/empty --rate -5", "--rate"),
    ("stream-produce-partitions-zero", "stream produce --events {tmp}/empty --partitions 0", "--partitions"),
    ("stream-broker-port", "stream broker --port 99999", "--port"),
    ("stream-bench-json-is-dir", "stream bench --json {tmp}/empty", "--json"),
    ("stream-bench-json-under-file", "stream bench --json {tmp}/file.txt/b.json", "--json"),
    # model summary
    ("model-summary-bad-preset", "model summary --preset bogus", "bogus"),
    ("model-summary-bad-encoder", "model summary --encoder bogus", "bogus"),
    ("model-summary-spec-missing", "model summary --spec {tmp}/missing.json", "missing.json"),
    ("model-summary-spec-binary", "model summary --spec {tmp}/binary.toml", "binary.toml"),
    ("model-summary-spec-not-a-spec", "model summary --spec {tmp}/list.json", "list.json"),
    ("model-summary-json-under-file", "model summary --json {tmp}/file.txt/s.json", "--json"),
    # embed train | generate | evaluate | export
    ("embed-train-missing-data", "embed train --data {tmp}/missing --out {tmp}/pf", "missing"),
    ("embed-train-bad-preset", "embed train --data {tmp}/empty --out {tmp}/pf --preset bogus", "bogus"),
    ("embed-train-out-is-file", "embed train --data {tmp}/empty --out {tmp}/file.txt", "--out"),
    ("embed-train-bad-device", "embed train --data {tmp}/empty --out {tmp}/pf --device bogus", "bogus"),
    ("embed-train-bad-date", "embed train --data {tmp}/empty --out {tmp}/pf --train-end notadate", "--train-end"),
    ("embed-train-steps-zero", "embed train --data {tmp}/empty --out {tmp}/pf --steps 0", "--steps"),
    ("embed-generate-missing-model", "embed generate --data {tmp}/empty --model {tmp}/missing.pt --date 2026-01-14", "missing.pt"),
    ("embed-generate-garbage-model", "embed generate --data {tmp}/empty --model {tmp}/garbage.pt --date 2026-01-14", "garbage.pt"),
    ("embed-generate-bad-date", "embed generate --data {tmp}/empty --model {tmp}/garbage.pt --date 14/01/2026", "--date"),
    ("embed-generate-shards-zero", "embed generate --data {tmp}/empty --model {tmp}/garbage.pt --date 2026-01-14 --shards 0", "--shards"),
    ("embed-generate-out-is-file", "embed generate --data {tmp}/empty --model {tmp}/garbage.pt --date 2026-01-14 --out {tmp}/file.txt", "--out"),
    ("embed-evaluate-k-zero", "embed evaluate --data {tmp}/empty --model {tmp}/garbage.pt --k 0", "--k"),
    ("embed-evaluate-json-is-dir", "embed evaluate --data {tmp}/empty --model {tmp}/garbage.pt --json {tmp}/empty", "--json"),
    ("embed-export-missing-root", "embed export --root {tmp}/missing --db {tmp}/db", "missing"),
    ("embed-export-db-is-file", "embed export --root {tmp}/empty --db {tmp}/file.txt", "--db"),
    # train
    ("train-config-missing", "train --config {tmp}/missing.toml --data {tmp}/empty", "missing.toml"),
    ("train-config-bad-toml", "train --config {tmp}/bad.toml --data {tmp}/empty", "bad.toml"),
    ("train-config-binary", "train --config {tmp}/binary.toml --data {tmp}/empty", "binary.toml"),
    ("train-config-unknown-field", "train --config {tmp}/run_unknown.toml --data {tmp}/empty", "nosuch"),
    ("train-config-bad-heads", "train --config {tmp}/run_heads.toml --data {tmp}/empty", "heads.utility.like"),
    ("train-data-missing", "train --data {tmp}/missing", "missing"),
    ("train-data-empty", "train --data {tmp}/empty --out {tmp}/t", "empty"),
    ("train-set-malformed", "train --data {tmp}/empty --set nodot", "--set"),
    ("train-set-unknown-key", "train --data {tmp}/empty --set model.nosuch=1", "nosuch"),
    ("train-bad-start", "train --data {tmp}/empty --start notadate", "--start"),
    ("train-out-is-file", "train --data {tmp}/empty --out {tmp}/file.txt", "--out"),
    ("train-out-under-file", "train --data {tmp}/empty --out {tmp}/file.txt/run", "--out"),
    # evaluate | compare
    ("evaluate-model-missing", "evaluate --model {tmp}/missing --data {tmp}/empty", "missing"),
    ("evaluate-model-garbage", "evaluate --model {tmp}/garbage.pt --data {tmp}/empty", "garbage.pt"),
    ("evaluate-utility-not-a-number", "evaluate --model {tmp}/garbage.pt --data {tmp}/empty --utility click=abc", "--utility"),
    ("evaluate-k-zero", "evaluate --model {tmp}/garbage.pt --data {tmp}/empty --k 0", "--k"),
    ("evaluate-out-is-file", "evaluate --model {tmp}/garbage.pt --data {tmp}/empty --out {tmp}/file.txt", "--out"),
    ("compare-one-model", "compare {tmp}/garbage.pt --out {tmp}/cmp", "two models"),
    ("compare-missing-files", "compare {tmp}/missing1 {tmp}/missing2 --out {tmp}/cmp", "missing1"),
    ("compare-name-twice", "compare x={tmp}/a x={tmp}/b --out {tmp}/cmp", "'x'"),
    ("compare-out-is-file", "compare {tmp}/a {tmp}/b --out {tmp}/file.txt", "--out"),
    # serve run | demo | publish
    ("serve-run-port", "serve run --models {tmp}/empty --data {tmp}/empty --port 99999", "--port"),
    ("serve-run-data-missing", "serve run --models {tmp}/m --data {tmp}/missing", "missing"),
    ("serve-run-data-without-items", "serve run --models {tmp}/m --data {tmp}/empty", "items.parquet"),
    ("serve-run-models-is-file", "serve run --models {tmp}/file.txt --data {tmp}/empty", "--models"),
    ("serve-run-max-candidates-zero", "serve run --models {tmp}/m --data {tmp}/empty --max-candidates 0", "--max-candidates"),
    ("serve-run-threads-negative", "serve run --models {tmp}/m --data {tmp}/empty --threads -1", "--threads"),
    ("serve-run-watch-negative", "serve run --models {tmp}/m --data {tmp}/empty --watch-interval -1", "--watch-interval"),
    ("serve-run-sequence-store-missing", "serve run --models {tmp}/m --data {tmp}/empty --sequence-store {tmp}/missing.rdb", "missing.rdb"),
    ("serve-run-user-embeddings-missing", "serve run --models {tmp}/m --data {tmp}/empty --user-embeddings {tmp}/missing-emb", "missing-emb"),
    ("serve-run-bad-log-level", "serve run --models {tmp}/m --data {tmp}/empty --log-level loud", "--log-level"),
    ("serve-demo-port", "serve demo --port 99999 --workdir {tmp}/sd", "--port"),
    ("serve-demo-n-items-zero", "serve demo --n-items 0 --workdir {tmp}/sd", "--n-items"),
    ("serve-demo-micro-batch", "serve demo --micro-batch-ms 5000 --workdir {tmp}/sd", "--micro-batch-ms"),
    ("serve-demo-cuda-graphs-on-cpu", "serve demo --cuda-graphs --workdir {tmp}/sd", "cuda_graphs"),
    ("serve-demo-chunk-negative", "serve demo --chunk-size -1 --workdir {tmp}/sd", "--chunk-size"),
    ("serve-demo-workdir-is-file", "serve demo --workdir {tmp}/file.txt", "--workdir"),
    ("serve-publish-missing", "serve publish {tmp}/missing.pt --models {tmp}/m --version v1", "missing.pt"),
    ("serve-publish-models-is-file", "serve publish {tmp}/garbage.pt --models {tmp}/file.txt --version v1", "--models"),
    # bench inference | service
    ("bench-inference-json-under-file", "bench inference --json {tmp}/file.txt/x.json", "--json"),
    ("bench-inference-repeats-zero", "bench inference --json {tmp}/x.json --repeats 0", "--repeats"),
    ("bench-inference-bad-section", "bench inference --json {tmp}/x.json --sections gpu", "--sections"),
    ("bench-service-rates-negative", "bench service --json {tmp}/s.json --rates -1", "--rates"),
    ("bench-service-duration-zero", "bench service --json {tmp}/s.json --duration 0", "--duration"),
    ("bench-service-json-is-dir", "bench service --json {tmp}/empty", "--json"),
    # online run | bench online
    ("online-run-arm-without-model", "online run --arm control --out {tmp}/on", "--arm"),
    ("online-run-arm-model-missing", "online run --arm a={tmp}/missing --out {tmp}/on", "missing"),
    ("online-run-days-zero", "online run --arm a=policy:production --days 0 --out {tmp}/on", "--days"),
    ("online-run-out-is-file", "online run --arm a=policy:production --out {tmp}/file.txt", "--out"),
    ("online-run-data-missing", "online run --arm a=policy:production --data {tmp}/missing --out {tmp}/on", "--data"),
    ("online-run-data-empty", "online run --arm a=policy:production --data {tmp}/empty --out {tmp}/on", "manifest"),
    ("online-run-no-data", "online run --arm a=policy:production --out {tmp}/on", "--data"),
    ("online-run-bad-retrain", "online run --arm a=policy:production --retrain weekly --out {tmp}/on", "--retrain"),
    ("online-run-arm-retrain-unknown-arm", "online run --arm a=policy:production --arm-retrain b=every:2d --out {tmp}/on", "--arm-retrain"),
    ("online-run-share-unknown-arm", "online run --arm a=policy:production --share z=0.5 --out {tmp}/on", "--share"),
    ("online-run-share-not-a-number", "online run --arm a=policy:production --share a=half --out {tmp}/on", "--share"),
    ("online-run-shares-over-one", "online run --arm a=policy:production --arm b=policy:oracle --share a=0.7 --share b=0.6 --data {tmp}/empty --out {tmp}/on", "sum to 1.3"),
    ("online-run-bad-control", "online run --arm a=policy:production --control z --data {tmp}/empty --out {tmp}/on", "control"),
    ("online-run-bad-policy", "online run --arm a=policy:best --data {tmp}/empty --out {tmp}/on", "policy:best"),
    ("online-run-bad-rest", "online run --arm a=policy:production --rest policy:best --data {tmp}/empty --out {tmp}/on", "rest"),
    ("online-run-rest-missing", "online run --arm a=policy:production --rest {tmp}/missing --data {tmp}/empty --out {tmp}/on", "--rest"),
    ("online-run-randomized-share", "online run --arm a=policy:production --randomized-share 2 --out {tmp}/on", "--randomized-share"),
    ("online-run-bad-utility", "online run --arm a=policy:production --utility garbage --out {tmp}/on", "--utility"),
    ("online-run-bad-training-data", "online run --arm a=policy:production --training-data mine --out {tmp}/on", "--training-data"),
    ("online-run-bad-precision", "online run --arm a=policy:production --precision fp8 --out {tmp}/on", "--precision"),
    ("online-run-model-not-a-model", "online run --arm a={tmp}/garbage.pt --out {tmp}/on", "garbage.pt"),
    ("online-run-user-embedding-model-missing", "online run --arm a=policy:production --user-embedding-model {tmp}/missing.pt --out {tmp}/on", "--user-embedding-model"),
    ("bench-online-demo-missing", "bench online --demo {tmp}/missing", "--demo"),
    ("bench-online-demo-empty", "bench online --demo {tmp}/empty", "world"),
    ("bench-online-json-is-dir", "bench online --json {tmp}/empty", "--json"),
    ("bench-online-days", "bench online --days 15", "--days"),
    ("bench-import-rows-zero", "bench import --rows 0", "--rows"),
    ("bench-import-json-is-dir", "bench import --json {tmp}/empty", "--json"),
    ("bench-import-memory-rows-zero", "bench import --memory-rows 0", "--memory-rows"),
    # experiment
    ("experiment-missing-dataset", "experiment table1 --dataset {tmp}/missing --budget smoke --out {tmp}/ex", "missing"),
    ("experiment-threads-zero", "experiment table1 --budget smoke --threads 0 --out {tmp}/ex", "--threads"),
    ("experiment-bad-seeds", "experiment table1 --budget smoke --seeds a,b --out {tmp}/ex", "--seeds"),
    ("experiment-out-is-file", "experiment table1 --budget smoke --out {tmp}/file.txt", "--out"),
    ("experiment-steps-negative", "experiment table1 --budget smoke --steps -1 --out {tmp}/ex", "--steps"),
    ("experiment-unknown-name", "experiment table7", "table7"),
    ("experiment-unknown-variant", "experiment table1 --budget smoke --variants nope --out {tmp}/ex", "known"),
    ("experiment-variants-table9", "experiment table9 --budget smoke --variants transact --out {tmp}/ex", "table9"),
    ("experiment-power-no-results", "experiment power", "--results"),
    ("experiment-persistence-not-mask", "experiment table1 --budget smoke --persistence 6 --out {tmp}/ex", "--persistence"),
    ("experiment-persistence-bad", "experiment mask --budget smoke --persistence 0,x --out {tmp}/ex", "--persistence"),
    ("experiment-power-bad-cell", "experiment power --results {tmp}/file.txt --cell transact", "--cell"),
    ("experiment-power-missing-results", "experiment power --results {tmp}/missing.json", "missing"),
    ("experiment-power-not-json", "experiment power --results {tmp}/file.txt", "file.txt"),
    ("experiment-online-budget-unknown", "experiment table5 --budget large --out {tmp}/ex", "--budget large"),
    ("experiment-online-seed-twice", "experiment fig6 --budget smoke --seeds 1,1 --out {tmp}/ex", "a seed twice"),
    ("experiment-combine-one-run", "experiment combine --results {tmp}/file.txt --out {tmp}/ex", "two or more runs"),
    ("experiment-days-offline", "experiment table1 --budget smoke --days 14 --out {tmp}/ex", "--days"),
    ("experiment-days-zero", "experiment fig6 --budget smoke --days 0 --out {tmp}/ex", "--days"),
    ("experiment-days-no-retrain", "experiment feedback-loop --budget quick --days 3 --out {tmp}/ex", "--days"),
    ("experiment-online-steps", "experiment diversity --budget smoke --steps 5 --out {tmp}/ex", "--steps"),
    ("experiment-online-not-a-world", "experiment feedback-loop --budget smoke --dataset {tmp}/empty --out {tmp}/ex", "--dataset"),
    # the top level
    ("unknown-command", "nosuch", "nosuch"),
    ("unknown-flag", "train --data {tmp}/empty --epochs 3", "--epochs"),
]  # fmt: skip


def make_inputs(tmp: Path) -> Path:
    """Lay out the files the cases name under ``tmp``; returns ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "empty").mkdir(exist_ok=True)
    (tmp / "m").mkdir(exist_ok=True)
    (tmp / "file.txt").write_text("not what you think\n")
    (tmp / "empty.csv").write_text("")
    (tmp / "bad.toml").write_text("[model\nencoder = = 'transact'\n")
    (tmp / "binary.toml").write_bytes(bytes(range(256)) * 8)
    (tmp / "garbage.pt").write_bytes(b"\x80\x04not a pickle at all" * 50)
    (tmp / "list.json").write_text("[1, 2, 3]\n")
    (tmp / "world_unknown.toml").write_text('preset = "tiny"\nnosuch = 1\n')
    (tmp / "world_wrong_type.toml").write_text('n_users = "many"\n')
    (tmp / "run_unknown.toml").write_text("[model]\nnosuch = 1\n")
    (tmp / "run_heads.toml").write_text('[heads]\nutility = { like = "much" }\n')
    (tmp / "labels.csv").write_text(
        "user_id,item_id,timestamp_ms,is_like\n1,7,1767571200000,0\n1,8,1767571205000,2\n"
    )
    return tmp


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("bad-cli"))


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``transact ARGV`` in this process: (exit status, stderr)."""
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("cmd", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_command_line_is_one_line_and_exit_2(
    cmd: str, names: str, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_in_process(shlex.split(cmd.format(tmp=inputs)), capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert code == 2, err
    assert len(lines) == 1, err
    assert names in lines[0], lines[0]
    assert lines[0].startswith("transact")


def test_debug_shows_the_traceback(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--config", str(inputs / "bad.toml"), "--data", str(inputs / "empty")]
    assert run_in_process(argv, capsys)[0] == 2
    with pytest.raises(ValueError, match="bad.toml"):  # the same error, not mapped
        main([*argv, "--debug"])
    with pytest.raises(ValueError, match="bad.toml"):  # --debug before the command too
        main(["--debug", *argv])


def test_the_installed_entry_point_prints_no_traceback(inputs: Path) -> None:
    """The real process: one line on stderr, status 2 (the rest run in-process)."""
    cmd = f"serve run --models {inputs}/m --data {inputs}/empty --port 99999"
    proc = subprocess.run(
        [sys.executable, "-m", "transact.cli", *shlex.split(cmd)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "transact serve run: error: argument --port: '99999' is not an integer >= 1 and "
        "<= 65535 (see transact serve run --help)"
    ]


def test_output_paths_are_checked_before_the_work(inputs: Path, capsys) -> None:
    """An unwritable --out fails at parse time: nothing is read from --data (an empty
    dir here, which would fail with a different error if it were read first)."""
    argv = ["data", "prepare", str(inputs / "empty"), "--split", "train"]
    code, err = run_in_process([*argv, "--out", str(inputs / "file.txt" / "x")], capsys)
    assert code == 2 and "argument --out" in err and "manifest" not in err
    code, err = run_in_process(argv, capsys)  # the same command with a good --out
    assert code == 2 and "manifest" in err
