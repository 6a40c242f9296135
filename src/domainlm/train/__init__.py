"""Training: cpt (continued pre-training), sft (scenario fine-tuning), dpo/kto (preference alignment).

``from domainlm.train import train, TrainConfig`` is light; torch loads when training starts.
"""

from domainlm.train.config import TrainConfig
from domainlm.train.stage import train

__all__ = ["TrainConfig", "train"]
