import numpy as np
import pyarrow as pa
import pytest

from transact.data.adapters.day_tables import event_ids, event_ids_reference


@pytest.mark.parametrize(
    "widths",
    [
        {"request": 1, "position": 1, "event": 1},
        {"request": 6, "position": 2, "event": 7},  # 9 digits after the letter
        {"request": 9, "position": 3, "event": 12},  # two halves
        {"request": 14, "position": 5, "event": 21},  # past uint64: the plain path
    ],
)
def test_event_ids_are_the_plain_ones(widths):
    """The column-wise digits give byte for byte the ids of the plain block-wise version."""
    rng = np.random.default_rng(widths["event"])
    n = 3000
    shown = rng.random(n) < 0.6
    top = lambda digits: min(10**digits, 2**62)  # noqa: E731
    a = np.where(shown, rng.integers(0, top(widths["request"]), n), 0)
    b = np.where(
        shown, rng.integers(0, top(widths["position"]), n), rng.integers(0, top(widths["event"]), n)
    )
    got = event_ids(shown, a, b, widths)
    assert got.type == pa.string()
    assert got.equals(event_ids_reference(shown, a, b, widths))
    for none in (shown[:0], np.zeros(n, bool), np.ones(n, bool)):
        k = none.size
        assert event_ids(none, a[:k], b[:k] % 10, widths).equals(
            event_ids_reference(none, a[:k], b[:k] % 10, widths)
        )
