"""Classic encoder-decoder speech baselines (LAS, CTC, RNN-T, Tacotron 2, FastSpeech 2, HiFi-GAN, Translatotron).

Nothing in ``alm`` or ``codec`` imports this package (``tests/test_isolation.py`` checks it).
"""

# LAS (Listen, Attend and Spell) with location-aware or MoChA attention; its decoding; alignment plots.
from legacy_seq2seq.alignment_plot import plot_alignment as plot_alignment
from legacy_seq2seq.las import LASConfig as LASConfig
from legacy_seq2seq.las import LASModel as LASModel
from legacy_seq2seq.las import LASOutput as LASOutput
from legacy_seq2seq.las_decoding import LASDecodingOptions as LASDecodingOptions
from legacy_seq2seq.las_decoding import LASDecodingResult as LASDecodingResult
from legacy_seq2seq.las_decoding import LASHypothesis as LASHypothesis
from legacy_seq2seq.las_decoding import beam_search as las_beam_search  # noqa: F401 (prefixed: CTC/RNN-T decode too)
from legacy_seq2seq.las_decoding import decode as las_decode  # noqa: F401
from legacy_seq2seq.las_decoding import greedy_decode as las_greedy_decode  # noqa: F401

# isort: split
# TTS baselines: Tacotron 2, FastSpeech 2, HiFi-GAN vocoder; their save/load helper.
from legacy_seq2seq.checkpoint import CheckpointError as CheckpointError
from legacy_seq2seq.fastspeech2 import FastSpeech2 as FastSpeech2
from legacy_seq2seq.fastspeech2 import FastSpeech2Config as FastSpeech2Config
from legacy_seq2seq.fastspeech2 import FastSpeech2Inference as FastSpeech2Inference
from legacy_seq2seq.fastspeech2 import FastSpeech2Output as FastSpeech2Output
from legacy_seq2seq.fastspeech2 import durations_from_alignment as durations_from_alignment
from legacy_seq2seq.fastspeech2 import fastspeech2_tiny as fastspeech2_tiny
from legacy_seq2seq.fastspeech2 import length_regulate as length_regulate
from legacy_seq2seq.hifigan import GeneratorLoss as GeneratorLoss
from legacy_seq2seq.hifigan import HiFiGANConfig as HiFiGANConfig
from legacy_seq2seq.hifigan import HiFiGANGenerator as HiFiGANGenerator
from legacy_seq2seq.hifigan import LogMel as LogMel
from legacy_seq2seq.hifigan import MultiPeriodDiscriminator as MultiPeriodDiscriminator
from legacy_seq2seq.hifigan import MultiScaleDiscriminator as MultiScaleDiscriminator
from legacy_seq2seq.hifigan import discriminator_loss as discriminator_loss
from legacy_seq2seq.hifigan import feature_matching_loss as feature_matching_loss
from legacy_seq2seq.hifigan import generator_adversarial_loss as generator_adversarial_loss
from legacy_seq2seq.hifigan import generator_loss as generator_loss
from legacy_seq2seq.hifigan import hifigan_cpu as hifigan_cpu
from legacy_seq2seq.hifigan import hifigan_v1 as hifigan_v1
from legacy_seq2seq.tacotron2 import Tacotron2 as Tacotron2
from legacy_seq2seq.tacotron2 import Tacotron2Config as Tacotron2Config
from legacy_seq2seq.tacotron2 import Tacotron2Inference as Tacotron2Inference
from legacy_seq2seq.tacotron2 import Tacotron2Output as Tacotron2Output
from legacy_seq2seq.tacotron2 import guided_attention_loss as guided_attention_loss
from legacy_seq2seq.tacotron2 import tacotron2_tiny as tacotron2_tiny

# isort: split
# CTC and RNN-T on a Conformer encoder; their decoding, pure-torch RNN-T loss, streaming; character vocabulary.
from legacy_seq2seq.conformer import ConformerEncoder as ConformerEncoder
from legacy_seq2seq.conformer import ConformerStreamer as ConformerStreamer
from legacy_seq2seq.ctc import CTCConfig as CTCConfig
from legacy_seq2seq.ctc import CTCModel as CTCModel
from legacy_seq2seq.ctc import ctc_greedy_decode as ctc_greedy_decode
from legacy_seq2seq.ctc import ctc_prefix_beam_search as ctc_prefix_beam_search
from legacy_seq2seq.rnnt import RNNTConfig as RNNTConfig
from legacy_seq2seq.rnnt import RNNTModel as RNNTModel
from legacy_seq2seq.rnnt_decoding import StreamingRNNT as StreamingRNNT
from legacy_seq2seq.rnnt_decoding import rnnt_beam_search as rnnt_beam_search
from legacy_seq2seq.rnnt_decoding import rnnt_greedy_decode as rnnt_greedy_decode
from legacy_seq2seq.rnnt_loss import rnnt_loss as rnnt_loss
from legacy_seq2seq.text import CharVocab as CharVocab

# isort: split
# Translatotron: direct speech-to-speech translation; its d-vector speaker encoder and GE2E loss.
from legacy_seq2seq.speaker_encoder import GE2ELoss as GE2ELoss
from legacy_seq2seq.speaker_encoder import SpeakerEncoder as SpeakerEncoder
from legacy_seq2seq.speaker_encoder import SpeakerEncoderConfig as SpeakerEncoderConfig
from legacy_seq2seq.speaker_encoder import speaker_encoder_tiny as speaker_encoder_tiny
from legacy_seq2seq.translatotron import Translatotron as Translatotron
from legacy_seq2seq.translatotron import TranslatotronConfig as TranslatotronConfig
from legacy_seq2seq.translatotron import TranslatotronInference as TranslatotronInference
from legacy_seq2seq.translatotron import TranslatotronOutput as TranslatotronOutput
from legacy_seq2seq.translatotron import translatotron_tiny as translatotron_tiny
