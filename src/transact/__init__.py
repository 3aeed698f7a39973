"""transact: TransAct (Xia et al., KDD 2023) as a production-shaped system.

Stages, in data-flow order: ``data`` -> ``features`` -> ``models`` -> ``training``
-> ``evaluation`` -> ``serving``; ``experiments`` and ``cli`` sit on top.
"""

__version__ = "0.1.0"
