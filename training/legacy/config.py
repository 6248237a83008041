"""Settings of a baseline run (:class:`LegacyTrainConfig`) and the model-size presets it names.

Presets are factory functions per model (``debug``: seconds on a CPU, for tests; ``cpu``: a run this 2-core
machine finishes in hours on ``corpus-3h``; ``paper``: the published sizes, for a GPU)::

    config = model_config("ctc", "cpu", vocab_size=len(vocab), n_mels=80)   # a CTCConfig
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from legacy_seq2seq.ctc import CTCConfig
from legacy_seq2seq.fastspeech2 import FastSpeech2Config, fastspeech2_tiny
from legacy_seq2seq.hifigan import HiFiGANConfig, hifigan_cpu, hifigan_v1
from legacy_seq2seq.inference import las_token_ids
from legacy_seq2seq.las import LASConfig
from legacy_seq2seq.rnnt import RNNTConfig
from legacy_seq2seq.tacotron2 import Tacotron2Config, tacotron2_tiny
from legacy_seq2seq.translatotron import TranslatotronConfig, translatotron_tiny
from training.config import TrainConfig

MODELS = ("ctc", "rnnt", "las", "tacotron2", "fastspeech2", "hifigan", "translatotron")
ASR_MODELS = ("ctc", "rnnt", "las")
TTS_MODELS = ("tacotron2", "fastspeech2")
PRESETS = ("debug", "cpu", "paper")
LANGS = ("en", "es")


@dataclass
class LegacyTrainConfig(TrainConfig):
    """One baseline run: the shared optimization/engine settings of :class:`training.config.TrainConfig` plus the
    model size, the data and the evaluation (saved with every checkpoint and in ``OUT/final/training.json``)."""

    bf16: bool = False  # fp32 by default: CTC/RNN-T losses, LSTMs and GAN training are precision-sensitive
    preset: str = "cpu"  # debug | cpu | paper (model sizes: :func:`model_config`)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # extra model-config fields over the preset
    max_minutes: float = 0.0  # > 0: a time budget; training stops there and the lr decay is timed to end with it
    # data
    batch_seconds: float = 60.0  # seconds of audio per micro-batch (padding not counted)
    max_batch_size: int = 32  # utterances (or vocoder segments) per micro-batch at most
    max_seconds: float = 15.0  # longer utterances are left out of training
    langs: str = "en,es"  # comma-separated languages to train on
    cache_dir: str | None = None  # feature cache root; None: CORPUS/legacy_features
    # evaluation
    num_samples: int = 4  # ASR: valid utterances decoded (CER/WER, logged next to their references) per eval
    eval_utterances: int = 16  # valid utterances for the valid loss / mel L1
    # Tacotron 2
    guided_attention_steps: int = 1000  # steps trained with the guided attention loss, then weight 0 (LAS too)
    guided_attention_start: int = 0  # ... from this step on (LAS: after the CTC head has learned the characters)
    guided_attention_weight: float = 1.0  # its weight during those steps (Tacotron 2 and Translatotron; LAS reads
    # its own LASConfig.guided_attention_weight from model_overrides)
    # Tacotron 2 and FastSpeech 2
    speaker_ids: bool = False  # learn one voice embedding per training speaker (the model's config lists them)
    init_from: str | None = None  # a trained directory of the same model whose weights start a new run; parameters
    # it lacks (say, the speaker table of a model trained without speaker_ids) start as built (zero for speakers)
    phonemes: bool = False  # read espeak-ng IPA phones instead of letters (the model's config says so)
    # FastSpeech 2
    durations_from: str | None = None  # durations from the alignments of a trained Tacotron 2 or CTC directory (same
    # symbols) or, for a phonemes run, of a "phone" unit tokenizer directory (codec/pretrained/units/phone)
    # HiFi-GAN
    vocoder_segment_s: float = 0.5  # waveform segment per training example
    vocoder_gan_start_step: int = 0  # steps before this train the generator alone (mel L1 + multi-resolution STFT)
    # Translatotron: source speech in source_lang -> target speech in the other language of the corpus pair
    source_lang: str = "es"

    def validate(self) -> None:
        super().validate()
        problems = []
        if self.preset not in PRESETS:
            problems.append(f"preset={self.preset!r} (one of {', '.join(PRESETS)})")
        if not self.lang_list():
            problems.append(f"langs={self.langs!r} names no known language ({', '.join(LANGS)})")
        if any(lang not in LANGS for lang in self.lang_list()):
            problems.append(f"langs={self.langs!r}: only {', '.join(LANGS)}")
        if self.batch_seconds <= 0 or self.max_batch_size < 1 or self.max_seconds <= 0:
            problems.append("batch_seconds, max_batch_size and max_seconds must be positive")
        if self.max_minutes < 0:
            problems.append(f"max_minutes={self.max_minutes} must be >= 0 (0: no time budget)")
        if not 0 <= self.guided_attention_start <= self.guided_attention_steps:
            problems.append(f"guided_attention_start={self.guided_attention_start} must be in [0, "
                            f"guided_attention_steps={self.guided_attention_steps}]")
        if self.vocoder_gan_start_step < 0:
            problems.append(f"vocoder_gan_start_step={self.vocoder_gan_start_step} must be >= 0")
        if self.vocoder_segment_s <= 0 or self.num_samples < 0 or self.eval_utterances < 1:
            problems.append("vocoder_segment_s and eval_utterances must be positive, num_samples >= 0")
        if self.speaker_ids and "speakers" in self.model_overrides:
            problems.append("speaker_ids sets the model's speakers from the training data: leave them out of "
                            "model_overrides")
        if self.phonemes and "phonemes" in self.model_overrides:
            problems.append("phonemes sets the model's input symbols: leave it out of model_overrides")
        if self.source_lang not in LANGS:
            problems.append(f"source_lang={self.source_lang!r}: only {', '.join(LANGS)}")
        if problems:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(problems))

    def lang_list(self) -> tuple[str, ...]:
        """:attr:`langs` as a tuple."""
        return tuple(x.strip() for x in self.langs.split(",") if x.strip())


# --- presets --------------------------------------------------------------------------------------------------
def _ctc(preset: str, vocab_size: int, n_mels: int) -> CTCConfig:
    if preset == "debug":
        return CTCConfig(n_mels=n_mels, d_model=16, n_heads=2, n_layers=1, ff_mult=2, conv_kernel=3,
                         vocab_size=vocab_size, dropout=0.0)
    if preset == "cpu":  # about 1.3 M parameters
        return CTCConfig(n_mels=n_mels, d_model=96, n_heads=4, n_layers=4, ff_mult=4, conv_kernel=15,
                         vocab_size=vocab_size, dropout=0.1)
    return CTCConfig(n_mels=n_mels, vocab_size=vocab_size)


def _rnnt(preset: str, vocab_size: int, n_mels: int) -> RNNTConfig:
    if preset == "debug":
        return RNNTConfig(n_mels=n_mels, d_model=16, n_heads=2, n_layers=1, ff_mult=2, conv_kernel=3,
                          vocab_size=vocab_size, pred_dim=16, joint_dim=16, dropout=0.0)
    if preset == "cpu":
        return RNNTConfig(n_mels=n_mels, d_model=96, n_heads=4, n_layers=4, ff_mult=4, conv_kernel=15,
                          vocab_size=vocab_size, pred_dim=128, joint_dim=128, dropout=0.1)
    return RNNTConfig(n_mels=n_mels, vocab_size=vocab_size)


def _las(preset: str, vocab_size: int, n_mels: int) -> LASConfig:
    size, sos, eos, pad = las_token_ids(vocab_size)
    ids = dict(vocab_size=size, sos_id=sos, eos_id=eos, pad_id=pad, n_mels=n_mels)
    if preset == "debug":
        return LASConfig(**ids, listener_hidden=16, speller_hidden=32, speller_layers=1, embed_dim=16,
                         attention_dim=16, location_channels=4, location_kernel=3)
    if preset == "cpu":
        return LASConfig(**ids, listener_hidden=128, speller_hidden=256, speller_layers=1, embed_dim=64,
                         attention_dim=128, location_channels=8, location_kernel=15, dropout=0.1)
    return LASConfig(**ids)


def _tacotron2(preset: str, vocab_size: int, n_mels: int) -> Tacotron2Config:
    if preset == "debug":
        return tacotron2_tiny(vocab_size, n_mels)
    if preset == "cpu":
        return Tacotron2Config(vocab_size, n_mels, embedding_dim=256, prenet_dim=128, attention_rnn_dim=256,
                               decoder_rnn_dim=256, attention_dim=128, location_n_filters=16, postnet_dim=256,
                               reduction_factor=2)
    return Tacotron2Config(vocab_size, n_mels)


def _fastspeech2(preset: str, vocab_size: int, n_mels: int) -> FastSpeech2Config:
    if preset == "debug":
        return fastspeech2_tiny(vocab_size, n_mels)
    if preset == "cpu":
        return FastSpeech2Config(vocab_size, n_mels, hidden_dim=128, encoder_layers=3, decoder_layers=3, n_heads=2,
                                 ffn_dim=512, variance_dim=128, n_bins=128)
    return FastSpeech2Config(vocab_size, n_mels)


def _hifigan(preset: str, vocab_size: int, n_mels: int) -> HiFiGANConfig:
    if preset == "debug":  # hop 160 = 10 x 16 in two stages; a few thousand parameters
        return HiFiGANConfig(n_mels=n_mels, upsample_rates=(10, 16), upsample_kernel_sizes=(20, 32),
                             upsample_initial_channel=16, resblock_kernel_sizes=(3,), resblock_dilations=((1, 3),),
                             mpd_periods=(2, 3), mpd_channels=(4, 8), msd_channels=(4, 8, 8, 8, 8, 8, 8),
                             msd_scales=2)
    return replace(hifigan_cpu() if preset == "cpu" else hifigan_v1(), n_mels=n_mels)


def _translatotron(preset: str, vocab_size: int, n_mels: int) -> TranslatotronConfig:
    # One character vocabulary covers both languages' auxiliary decoders. The corpus speaks a pair's two sides in
    # different synthetic voices, so the cpu preset leaves the speaker encoder out (speaker_dim 0): there is no
    # source voice in the target audio to keep, and the paper's encoder is pretrained on far more speakers.
    if preset == "debug":
        return translatotron_tiny(n_mels, vocab_size, vocab_size)
    if preset == "cpu":
        return TranslatotronConfig(n_mels, vocab_size, vocab_size, frame_stack=2, encoder_layers=4, encoder_dim=256,
                                   speaker_dim=0, aux_source_layer=2, aux_target_layer=3, aux_hidden=128,
                                   aux_embed_dim=64, aux_attention_dim=64, prenet_dim=128, attention_rnn_dim=256,
                                   decoder_rnn_dim=256, attention_dim=128, location_n_filters=16, postnet_dim=256,
                                   guided_attention_weight=1.0)
    return TranslatotronConfig(n_mels, vocab_size, vocab_size)


_FACTORIES = {"ctc": _ctc, "rnnt": _rnnt, "las": _las, "tacotron2": _tacotron2, "fastspeech2": _fastspeech2,
              "hifigan": _hifigan, "translatotron": _translatotron}


def model_config(kind: str, preset: str, vocab_size: int, n_mels: int,
                 overrides: dict[str, Any] | None = None) -> Any:
    """The model config of ``kind`` at ``preset`` size, with ``overrides`` applied (validated by the config).

    Args:
        kind: one of :data:`MODELS`.
        preset: one of :data:`PRESETS`.
        vocab_size: ``len(CharVocab)`` (blank included); LAS adds its start and end ids itself.
        n_mels: log-mel bins.
        overrides: config fields to replace.
    """
    if kind not in _FACTORIES:
        raise ValueError(f"unknown model {kind!r}; known: {', '.join(MODELS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    config = _FACTORIES[kind](preset, vocab_size, n_mels)
    return replace(config, **overrides) if overrides else config
