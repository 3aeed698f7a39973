import contextlib
import json

from transact.cli import build_parser, main
from transact.data.examples import ExampleSet
from transact.data.io import load_manifest


def test_help_teaches_with_examples(capsys):
    parser = build_parser()
    for argv in (["data", "--help"], ["data", "generate", "--help"], ["data", "prepare", "--help"]):
        with contextlib.suppress(SystemExit):
            parser.parse_args(argv)
        out = capsys.readouterr().out
        assert "example" in out and "transact data" in out


def test_generate_stats_prepare_round_trip(tmp_path, capsys):
    world = tmp_path / "w"
    assert main(["data", "generate", "--out", str(world), "--preset", "tiny", "--seed", "2",
                 "--users", "20", "--days", "1", "2", "1"]) == 0  # fmt: skip
    m = load_manifest(world)
    assert m.n_users == 20 and m.preset == "tiny" and m.seed == 2
    assert main(["data", "stats", str(world), "--json", str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["impressions"] == sum(
        stats["label_rates"][k]["impressions"] for k in ("history", "train", "eval")
    )
    assert stats["action_mix"]["impression"]["count"] == stats["impressions"]
    assert "sequence length (train)" in capsys.readouterr().out
    assert (
        main(
            [
                "data",
                "prepare",
                str(world),
                "--split",
                "train",
                "--negative-ratio",
                "1",
                "--seq-len",
                "8",
            ]
        )
        == 0
    )
    ex = ExampleSet.load(world / "examples" / "train")
    pos = ex.labels.any(axis=1).sum()
    assert len(ex) == 2 * pos and ex.seq_types.shape[1] == 8
