"""Property tests of the TOML config loaders a command line feeds with a user's file.

Any bytes in (binary, invalid UTF-8 with lone surrogates, TOML syntax errors, arbitrary
values nested in arrays and tables, huge and non-finite numbers, unknown keys) end in a
loaded config or in ONE user error (``ValueError``/``OSError``, which ``transact`` prints
as one line and exit 2), never another exception type. The loaders the CLI calls also
name the file in the message.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transact.arguments import USER_ERRORS
from transact.data.world import WorldConfig
from transact.pipeline.run_config import RunConfig, load_run_config
from transact.training.cli import load_config_with_overrides

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


def toml_value(v: object) -> str:
    """A TOML literal for a JSON-like value (strings escaped, so any code point is legal)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        escaped = "".join(
            c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in v
        )
        return f'"{escaped}"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{toml_value(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
# raw bytes; text with lone surrogates (not UTF-8 once encoded); deeply nested arrays
raw_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=120).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.integers(1, 600).map(lambda n: ("x = " + "[" * n + "]" * n).encode()),
)
WORLD_KEYS = [f.name for f in dataclasses.fields(WorldConfig)] + ["preset", "nosuch"]
world_files = st.one_of(
    raw_bytes,
    st.dictionaries(st.sampled_from(WORLD_KEYS), values, max_size=4).map(
        lambda d: "\n".join(f"{k} = {toml_value(v)}" for k, v in d.items()).encode()
    ),
    st.dictionaries(st.sampled_from(WORLD_KEYS), scalars, max_size=6).map(
        lambda d: "\n".join(f"{k} = {toml_value(v)}" for k, v in d.items()).encode()
    ),
)
RUN_TABLES = ["data", "model", "loss", "train", "eval", "nosuch"]
RUN_FIELDS = ["preset", "encoder", "seq_len", "negative_ratio", "max_steps", "peak_lr",
              "batch_size", "k", "utility", "heads", "num_layers", "nosuch"]  # fmt: skip
run_files = st.one_of(
    raw_bytes,
    st.dictionaries(
        st.sampled_from(RUN_TABLES),
        st.dictionaries(st.sampled_from(RUN_FIELDS), values, max_size=3),
        max_size=3,
    ).map(
        lambda d: "\n".join(
            f"[{table}]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in fields.items())
            for table, fields in d.items()
        ).encode()
    ),
)


def _load(loader, tmp: Path, data: bytes, names_file: bool):  # noqa: ANN001, ANN202
    path = tmp / "config.toml"
    path.write_bytes(data)
    try:
        return loader(path)
    except USER_ERRORS as exc:
        assert not names_file or str(path) in str(exc), str(exc)
        return None


@SETTINGS
@given(data=world_files)
def test_world_config_loader_never_escapes(data: bytes, tmp_path_factory) -> None:  # noqa: ANN001
    config = _load(WorldConfig.from_toml, tmp_path_factory.mktemp("w"), data, names_file=True)
    assert config is None or isinstance(config, WorldConfig)


@SETTINGS
@given(data=run_files)
def test_run_config_loaders_never_escape(data: bytes, tmp_path_factory) -> None:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("r")
    cli = _load(lambda p: load_config_with_overrides(p, []), tmp, data, names_file=True)
    assert cli is None or isinstance(cli, RunConfig)
    plain = _load(load_run_config, tmp, data, names_file=False)
    assert (plain is None) == (cli is None)


def test_wrong_types_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('preset = "tiny"\nn_users = "many"\n')
    for text, why in [
        ('n_users = "many"', "WorldConfig.n_users: expected int, got 'many'"),
        ("candidate_mix = [0.5, 0.5, true]", "WorldConfig.candidate_mix[2]: expected float"),
        ("heads = 3", "WorldConfig.heads: expected an array"),
        ("preset = 7", "preset 7: unknown"),
        ("n_users = -1", "WorldConfig.n_users: must be >= 1"),
    ]:
        path.write_text(text + "\n")
        try:
            WorldConfig.from_toml(path)
        except ValueError as exc:
            assert why in str(exc) and str(path) in str(exc), str(exc)
        else:
            raise AssertionError(f"{text!r} loaded")
    path.write_text('preset = "tiny"\ncandidate_mix = [1, 0, 0, 0]\n')
    assert WorldConfig.from_toml(path).candidate_mix == (1.0, 0.0, 0.0, 0.0)
