"""The online simulator end to end on a 60-user world: designs, stream, logs, retraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from transact.data.examples import DEFAULT_SEQUENCE_ACTIONS
from transact.data.io import load_event_arrays, load_manifest, partition_files, read_impressions
from transact.data.sequences import build_sequences
from transact.online import ArmSpec, OnlineConfig, RetrainSchedule, simulate, write_report
from transact.online.metrics import METRICS, SEGMENTS
from transact.online.result import OnlineResult
from transact.serving.features import FeatureAssembler

pytestmark = pytest.mark.slow


def _config(world: Path, arms: tuple[ArmSpec, ...], **kwargs: object) -> OnlineConfig:
    base: dict[str, object] = {"days": 2, "pre_days": 2, "progress": False}
    return OnlineConfig(str(world), arms, **{**base, **kwargs})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def recorded(online_world: Path, online_models: dict[str, Path], tmp_path_factory):
    """A paired run of the baseline against the production ranker, recording every
    sequence the model's feature assembly read (user, request time, the sequence)."""
    seen: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    original = FeatureAssembler.assemble_many

    def recording(self, user_ids, request_times_ms, offsets, item_ids, context=None):  # noqa: ANN001
        out = original(self, user_ids, request_times_ms, offsets, item_ids, context)
        types = np.stack([a.tensors.action_types[0].numpy() for a in out])
        times = np.stack([a.tensors.action_times_ms[0].numpy() for a in out])
        store = str(Path(self.sequences.store.path).parent.relative_to(out_dir))
        seen.append((store, np.asarray(user_ids), np.asarray(request_times_ms), types, times))
        return out

    arms = (
        ArmSpec("control", "policy:production"),
        ArmSpec("model", str(online_models["baseline"])),
    )
    out = out_dir = tmp_path_factory.mktemp("recorded") / "run"
    FeatureAssembler.assemble_many = recording  # type: ignore[method-assign]
    try:
        result = simulate(_config(online_world, arms, paired=True), out)
    finally:
        FeatureAssembler.assemble_many = original  # type: ignore[method-assign]
    return result, out, seen


def test_the_model_reads_what_the_stream_processor_stored(recorded) -> None:
    """Every sequence served equals the one the offline builder makes from the logs: the
    actions of earlier rounds are in it, nothing else is (no side channel, no leak)."""
    result, out, seen = recorded
    assert seen
    fresh, checked = 0, set()
    events = {}
    for env, users, times, types, action_times in seen:
        if env not in events:
            events[env] = load_event_arrays(out / env / "logs", actions=DEFAULT_SEQUENCE_ACTIONS)
        ev = events[env]
        want = build_sequences(
            ev.user_ids, ev.item_ids, ev.action_types, ev.times_ms,
            users, times, seq_len=types.shape[1],
        )  # fmt: skip
        assert np.array_equal(want.action_types.numpy(), types)
        assert np.array_equal(want.action_times_ms.numpy(), action_times)
        age = times[:, None] - np.where(types > 0, action_times, 0)
        fresh += int((age < 3_600_000).any(axis=1).sum())
        checked.add(env)
    assert checked == {"buckets", "paired/model"}
    assert fresh > 20  # many requests read an action of the last hour: the previous round


def test_the_paired_copy_of_a_bucket_is_the_bucket(recorded) -> None:
    """Common random numbers: the users of a bucket, served by the same policy in the
    bucket design and in that arm's paired copy, live the same days exactly."""
    result: OnlineResult = recorded[0]
    for arm in ("control", "model"):
        bucket = result.arm(arm, "buckets")
        copy = result.arm(arm, "paired").metrics.select(bucket.users)
        for metric in METRICS:
            for segment in SEGMENTS:
                assert np.array_equal(
                    copy.get(metric, segment).values, bucket.metrics.get(metric, segment).values
                ), (arm, metric, segment)


def test_a_bucket_is_paired_with_its_users_in_the_copies(recorded) -> None:
    """The feedback loop's cross-design statistics: a bucket against its own users in a
    copy, and the difference of two gains paired on those users."""
    from transact.experiments.online import paired_across, paired_difference_of_gains
    from transact.online.stats import paired_lift

    result: OnlineResult = recorded[0]
    users = result.arm("model", "buckets").metrics.users
    assert 0 < users.size < 60  # a bucket, not everyone
    # the same policy in the bucket and in its copy: the same days, so no gain at all
    same = paired_across(result, "model", "model", "clicks")
    assert same.n_t == users.size and same.mean_t > 0
    assert same.lift == 0.0 and same.ci_low == same.ci_high == 0.0
    # against the other copy: the copy's values of exactly the bucket's users
    vs = paired_across(result, "model", "control", "clicks")
    control = result.arm("control", "paired").metrics.select(users).get("clicks").period("clicks")
    bucket = result.arm("model", "buckets").metrics.get("clicks").period("clicks")
    want = paired_lift(bucket, control)
    assert vs.lift == pytest.approx(want.lift) and vs.se == pytest.approx(want.se)
    assert vs.lift != 0.0 and vs.se > 0
    # (T - B) / C: zero when T is the bucket's own copy; minus the bucket's gain when T is C
    assert paired_difference_of_gains(result, "model", "model", "control", "clicks").lift == 0.0
    minus = paired_difference_of_gains(result, "model", "control", "control", "clicks")
    assert minus.lift == pytest.approx(-vs.lift) and minus.se == pytest.approx(vs.se)
    # the growth of (T - B) / C from one day to the next: the difference of the two days'
    # values, with an interval of its own (the same users on both days)
    from transact.experiments.online import paired_growth_of_gains

    zero = paired_growth_of_gains(result, "model", "model", "control", "clicks", [0], [1])
    assert zero.lift == 0.0 and zero.se == 0.0
    grow = paired_growth_of_gains(result, "model", "control", "control", "clicks", [0], [1])
    per_day = [
        paired_difference_of_gains(result, "model", "control", "control", "clicks", days=[d])
        for d in (0, 1)
    ]
    assert grow.lift == pytest.approx(per_day[1].lift - per_day[0].lift)
    assert (grow.mean_t, grow.mean_c) == pytest.approx((per_day[1].lift, per_day[0].lift))
    assert grow.se > 0 and grow.ci_low < grow.lift < grow.ci_high
    # one day, one segment
    day1 = paired_across(result, "model", "control", "clicks", "non_core", days=[1])
    assert day1.n_t == result.arm("model", "buckets").metrics.get("clicks", "non_core").users.size


def test_logs_are_a_world_dir_linked_to_the_offline_days(recorded, online_world: Path) -> None:
    result, out, _ = recorded
    logs = out / "buckets" / "logs"
    manifest = load_manifest(logs)
    online = manifest.extra["online"]
    assert online["design"] == "buckets" and online["users"] == 60
    files = partition_files(logs, "events")
    offline = [f for d, f in files if d < "2026-01-09"]
    assert offline and all(f.is_symlink() for f in offline)
    assert not any(f.is_symlink() for d, f in files if d >= "2026-01-09")
    times = np.concatenate([pq.read_table(f).column("timestamp_ms").to_numpy() for _, f in files])
    assert (np.diff(times) >= 0).all()  # the log replays as a stream
    # what the logs hold is what the metrics counted
    arms = result.arms["buckets"]
    counted = sum(a.metrics.get("impressions").values.sum() for a in arms.values())
    logged = sum(b.num_rows for b in read_impressions(logs, online["online_start_ms"]))
    # the offline world's last sessions ran past its last midnight: logged there, not online
    carried = sum(b.num_rows for b in read_impressions(online_world, online["online_start_ms"]))
    assert logged - carried == counted == result.environments["buckets"]["impressions"]
    # nothing was written into the offline world
    assert load_manifest(online_world).end_ms < online["online_start_ms"] + 86_400_000
    stream = result.environments["buckets"]["stream"]
    assert stream["dead_letters_total"] == 0 and stream["outcomes"]["accepted"] > 0


def test_an_aa_test_with_paired_copies_has_lift_exactly_zero(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path
) -> None:
    model = str(online_models["baseline"])
    arms = (ArmSpec("a", model), ArmSpec("b", model))
    result = simulate(_config(online_world, arms, paired=True, days=1), tmp_path / "aa")
    for metric in METRICS:
        for segment in SEGMENTS:
            lift = result.lift("b", metric, segment, "paired")
            if np.isfinite(lift.lift):
                assert lift.lift == 0.0 and lift.ci_low == lift.ci_high == 0.0, metric
    assert result.lift("b", "repins", "all", "paired").n_t == 60
    a, b = (pq.read_table(p).drop(["event_id"]) for p in (
        next((tmp_path / "aa" / "paired" / n / "logs" / "events").glob("day=2026-01-09/*"))
        for n in ("a", "b")
    ))  # fmt: skip
    assert a.equals(b)


def test_retraining_on_schedule_reads_only_its_window(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path
) -> None:
    arms = (
        ArmSpec("control", "policy:production"),
        ArmSpec("model", str(online_models["baseline"]), retrain=RetrainSchedule.parse("every:1d")),
    )
    cfg = _config(online_world, arms, days=3, paired=True, retrain_steps=2, window_days=2)
    result = simulate(cfg, tmp_path / "run")
    records = [(r.design, r.arm, r.day) for r in result.retrains]
    assert records == [("buckets", "model", 1), ("paired/model", "model", 1),
                       ("buckets", "model", 2), ("paired/model", "model", 2)]  # fmt: skip
    bucket_users = set(result.arm("model").users.tolist())
    for r in result.retrains:
        assert r.window_end_ms == result.online_start_ms + r.day * 86_400_000
        assert r.window_end_ms - r.window_start_ms == 2 * 86_400_000
        data = tmp_path / "run" / r.model / ".." / "data"
        imp = pq.read_table(data / "impressions")
        times = imp.column("request_time_ms").to_numpy()
        assert times.max() < r.window_end_ms  # no future day
        assert times.min() >= r.window_start_ms
        ev = pq.read_table(data / "events").column("timestamp_ms").to_numpy()
        assert ev.max() < r.window_end_ms
        users = set(imp.column("user_id").to_numpy().tolist())
        if r.design == "buckets":  # its own bucket's logs
            assert users <= bucket_users and r.users == len(bucket_users)
        else:
            assert len(users) > len(bucket_users)
        assert (tmp_path / "run" / r.model / "model.pt").exists() and r.steps == 2
    report = result.to_dict()
    assert [r["day"] for r in report["retrains"]] == [1, 1, 2, 2]
    assert "wall_s" not in report["retrains"][0]


def _retrained_once(
    world: Path, models: dict[str, Path], out: Path, training_data: str
) -> OnlineResult:
    """The production ranker against the baseline, paired, each retrained on day 1."""
    arms = (
        ArmSpec("control", "policy:production"),
        ArmSpec("model", str(models["baseline"])),
    )
    cfg = _config(
        world, arms, paired=True, training_data=training_data,
        retrain=RetrainSchedule.parse("days:1"), retrain_steps=2, window_days=2,
    )  # fmt: skip
    return simulate(cfg, out)


def test_pooled_paired_copies_reuse_the_bucket_arms_model(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path
) -> None:
    result = _retrained_once(online_world, online_models, tmp_path / "run", "pooled")
    bucket, paired = result.retrains
    assert bucket.users is None and bucket.reused_from is None  # every user's logs
    assert paired.reused_from == "buckets/model/day-01" and paired.model == bucket.model


def test_pooled_buckets_retrain_the_copies_on_their_own_logs(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path
) -> None:
    """The feedback loop's design: the bucket arm on every user's logs of the bucket
    environment (mostly another ranker's), its paired copy on the copy's logs (every
    user served by the arm): the same users, shaped by different rankers."""
    result = _retrained_once(online_world, online_models, tmp_path / "run", "pooled-buckets")
    bucket, paired = result.retrains
    assert (bucket.design, paired.design) == ("buckets", "paired/model")
    assert bucket.users is None and paired.users == 60  # every user, both
    assert paired.reused_from is None and paired.model != bucket.model
    online = result.online_start_ms

    def impressions(r):  # noqa: ANN001, ANN202
        return pq.read_table(tmp_path / "run" / r.model / ".." / "data" / "impressions")

    def online_users(r) -> set[int]:  # noqa: ANN001
        imp = impressions(r)
        keep = imp.column("request_time_ms").to_numpy() >= online
        return set(imp.column("user_id").to_numpy()[keep].tolist())

    users = online_users(bucket)
    assert users == online_users(paired) and len(users) > 30  # the same users online ...
    assert not impressions(bucket).equals(impressions(paired))  # ... shown different feeds
    assert result.to_dict()["config"]["training_data"] == "pooled-buckets"


def test_a_bucket_model_copy_serves_the_buckets_model_to_every_user(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path
) -> None:
    """``bucket_model_copies``: one more paired copy of the arm's users that serves the
    model the arm's *bucket* retrained. Before the retrain it lives the arm's copy's days
    exactly; on the bucket's users it lives the bucket's days exactly, the whole period
    (a user's days depend on no other user's); after the retrain it and the arm's own
    copy differ only in the data their model was retrained on."""
    arms = (
        ArmSpec("control", "policy:production"),
        ArmSpec("model", str(online_models["baseline"])),
    )
    cfg = _config(
        online_world, arms, days=3, paired=True, training_data="pooled-buckets",
        bucket_model_copies=("model",), retrain=RetrainSchedule.parse("days:1"),
        retrain_steps=2, window_days=2,
    )  # fmt: skip
    result = simulate(cfg, tmp_path / "run")
    by = {r.design: r for r in result.retrains}
    assert list(by) == ["buckets", "paired/model", "paired/model@buckets"]
    copy = by["paired/model@buckets"]
    assert copy.reused_from == "buckets/model/day-01" and copy.model == by["buckets"].model
    assert by["paired/model"].model != by["buckets"].model  # its own logs' model
    mine, own = result.arm("model@buckets", "paired"), result.arm("model", "paired")
    bucket = result.arm("model", "buckets")
    assert np.array_equal(mine.users, own.users) and mine.users.size == 60
    assert 0 < bucket.users.size < 60
    on_bucket = mine.metrics.select(bucket.users)
    later = 0
    for metric in METRICS:
        a, b = mine.metrics.get(metric).values, own.metrics.get(metric).values
        assert np.array_equal(a[:1], b[:1]), metric  # day 0: the same model
        later += int((a[1:] != b[1:]).sum())
        assert np.array_equal(
            on_bucket.get(metric).values, bucket.metrics.get(metric).values
        ), metric  # fmt: skip
    assert later > 0  # the two retrained models serve different feeds
    report = result.to_dict()
    assert report["config"]["bucket_model_copies"] == ["model"]
    assert report["designs"]["paired"]["arms"]["model@buckets"]["users"] == 60
    assert "paired/model@buckets" in report["environments"]


def test_reports_are_reproducible_from_the_seed(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path
) -> None:
    arms = (
        ArmSpec("control", "policy:production"),
        ArmSpec("model", str(online_models["baseline"])),
    )
    texts = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = simulate(_config(online_world, arms, days=1, seed=seed), tmp_path / name)
        paths = write_report(result, tmp_path / name)
        texts.append(paths["report.json"].read_bytes())
        for file in ("report.md", "fig6.png", "diversity.png", "timings.json"):
            assert paths[file].stat().st_size > 0
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    report = json.loads(texts[0])
    assert report["config"]["salt"] == "online-0"
    assert set(report["designs"]) == {"buckets"}
