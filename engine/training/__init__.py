"""Training: labels, stage-1 masked reconstruction (`pretrain`) and stage-2 fine-tuning (`finetune`)."""

from .classes import parse_classes, table_from_names, table_from_values
from .finetune import FinetuneResult, finetune
from .labels import LabelSource, read_labels
from .options import FinetuneOptions, PretrainOptions
from .pretrain import PretrainResult, pretrain

__all__ = [
    "finetune",
    "FinetuneResult",
    "FinetuneOptions",
    "pretrain",
    "PretrainResult",
    "PretrainOptions",
    "read_labels",
    "LabelSource",
    "parse_classes",
    "table_from_names",
    "table_from_values",
]
