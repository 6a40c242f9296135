"""Training: cpt (continued pre-training), sft (scenario fine-tuning), dpo/kto (preference alignment).

``from domainlm.train import train, TrainConfig`` is light; torch loads when training starts.

Other stages that train or score a model on the line's data (compress: distillation, the pruning recovery,
held-out loss) reuse the training data helpers below rather than keep their own readers and packing, so
a model is taught and measured on sequences built the same way. They are public for that reason: other
packages import them from here, never from ``domainlm.train.data``.
"""

from domainlm.train.config import TrainConfig, TrainSection
from domainlm.train.data import (
    Example,
    Loaded,
    collate,
    load_records,
    pack_documents,
    pack_examples,
    tokenize_chat,
    tokenize_record,
)
from domainlm.train.stage import train

__all__ = [
    "TrainConfig", "TrainSection", "train",
    # data helpers other stages reuse
    "Example", "Loaded", "collate", "load_records", "pack_documents", "pack_examples", "tokenize_chat",
    "tokenize_record",
]
