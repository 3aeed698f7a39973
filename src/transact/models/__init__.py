"""Ranking models: TransAct, the sequence-encoder baselines and the Pinnability ranker.

Public API::

    TransActConfig, TransAct               # paper 3.3 (sequence encoder)
    SequenceEncoder, build_sequence_encoder, SEQUENCE_ENCODERS   # Tables 1 and 3
    PinnabilityConfig, Pinnability         # paper 3.1 (the ranker)
    example_feature_spec                   # hand-made specs for summaries/tests
"""

from transact.models.baselines import BaselineConfig
from transact.models.encoders import SEQUENCE_ENCODERS, build_sequence_encoder
from transact.models.examples import example_feature_spec, example_ranker_inputs
from transact.models.pinnability import Pinnability, PinnabilityConfig
from transact.models.sequence import SequenceEncoder
from transact.models.transact import TransAct, TransActConfig

__all__ = [
    "SEQUENCE_ENCODERS",
    "BaselineConfig",
    "Pinnability",
    "PinnabilityConfig",
    "SequenceEncoder",
    "TransAct",
    "TransActConfig",
    "build_sequence_encoder",
    "example_feature_spec",
    "example_ranker_inputs",
]
