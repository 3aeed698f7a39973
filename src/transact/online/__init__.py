"""The online simulator: A/B experiments of served models in the closed-loop world.

Public API (what ``transact online run`` and the experiments call)::

    from transact.online import ArmSpec, OnlineConfig, RetrainSchedule, simulate, write_report

    config = OnlineConfig(
        data_dir="runs/demo/world",
        arms=(ArmSpec("control", "runs/demo/runs/baseline", share=0.5),
              ArmSpec("treatment", "runs/demo/runs/transact", share=0.5)),
        days=14, paired=True, retrain=RetrainSchedule.parse("every:3.5d"),
    )
    result = simulate(config, "runs/online")       # an OnlineResult
    result.lift("treatment", "repins", "non_core")  # Lift with its 95% interval
    write_report(result, "runs/online")            # report.json/md, fig6.png, diversity.png

One module per concern: ``config`` (the experiment), ``buckets`` (salted hash), ``replay``
(the pre-period's end state), ``stream`` (events -> processor -> store), ``scoring`` (a
model through the serving code, or a world policy), ``logs`` (an environment's logs as a
world dir, training windows), ``retrain``, ``metrics`` (per user and day), ``stats``
(CUPED and paired lifts), ``simulator`` (the day and round loop), ``result``, ``report``,
``bench``; ``docs/online.md`` describes the design.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArmSpec",
    "OnlineConfig",
    "OnlineResult",
    "RetrainSchedule",
    "simulate",
    "write_report",
]

_WHERE = {
    "ArmSpec": "transact.online.config",
    "OnlineConfig": "transact.online.config",
    "RetrainSchedule": "transact.online.config",
    "OnlineResult": "transact.online.result",
    "simulate": "transact.online.simulator",
    "write_report": "transact.online.report",
}


def __getattr__(name: str) -> Any:
    # lazy, so `transact --help` (which imports transact.online.cli) does not load torch
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'transact.online' has no attribute {name!r}")
