"""Pooling-aware distillation: mining, teacher scoring, the loss and the training run."""
