"""Pieces of the baseline trainer (``python -m training.train_legacy``): settings and presets, data and cache,
FastSpeech 2's prosody targets, per-model steps and evaluation."""

from training.legacy.config import MODELS, PRESETS, LegacyTrainConfig, model_config

__all__ = ["MODELS", "PRESETS", "LegacyTrainConfig", "model_config"]
