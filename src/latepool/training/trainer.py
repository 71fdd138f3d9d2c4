"""sentence-transformers' ``MultiVectorEncoderTrainer``, saving every checkpoint in latepool's checkpoint format."""

from __future__ import annotations

import os
from typing import Any

import torch
from sentence_transformers.multi_vector_encoder import MultiVectorEncoderTrainer
from transformers.trainer import TRAINING_ARGS_NAME

from latepool.checkpoints import save_checkpoint
from latepool.options import CHECKPOINT_FORMATS


class LatepoolTrainer(MultiVectorEncoderTrainer):
    """The sentence-transformers trainer; intermediate checkpoints are written as ``checkpoint_format``.

    The loop, optimizer and scheduler state, resuming and multi-GPU are the parent's. Only the model
    files of each ``checkpoint-N`` directory change layout: with ``"pylate"`` (the default) every
    checkpoint loads in PyLate 1.6 as well as in sentence-transformers >= 6.2.

    Args:
        *args: Passed to ``MultiVectorEncoderTrainer``.
        checkpoint_format: One of :data:`latepool.checkpoints.CHECKPOINT_FORMATS`.
        **kwargs: Passed to ``MultiVectorEncoderTrainer``.
    """

    def __init__(self, *args: Any, checkpoint_format: str = "pylate", **kwargs: Any) -> None:
        if checkpoint_format not in CHECKPOINT_FORMATS:
            raise ValueError(f"checkpoint format must be one of {CHECKPOINT_FORMATS}, got {checkpoint_format!r}")
        super().__init__(*args, **kwargs)
        self.checkpoint_format = checkpoint_format

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        save_checkpoint(self.model, output_dir, self.checkpoint_format)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
