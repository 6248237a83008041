"""The ALM configuration: Llama decoder dimensions plus the vocabulary layout, saved as ``config.json``.

:class:`AlmConfig` subclasses ``transformers.LlamaConfig`` (itself a ``PreTrainedConfig``) so that the decoder
is a stock Llama (RoPE, RMSNorm, SwiGLU, grouped-query SDPA attention) and every ecosystem tool that knows
Llama knows it. What it adds is what makes a checkpoint directory self-describing:

- ``vocab_layout``: :meth:`alm.vocab.Vocabulary.to_dict`; ``vocab_size`` and the special ids derive from it;
- ``num_codebooks``: K, the codebooks this model reads and writes (at most the layout's);
- ``input_speech``: how speech enters the prompt (``"units"``, ``"codec"`` or ``"both"``);
- ``collapse_units``: whether prompt units have runs of repeats merged (``5 5 7 -> 5 7``), as in training;
- ``drop_unit_blanks``: whether prompt units leave out the CTC blank of ``"phone"`` units (phones only);
- ``voice_seconds``: length of the voice prompts (TTS, S2ST) the model was trained with;
- ``asr_context``: whether ASR prompts may carry earlier text (the previous chunk's, in long-form decoding);
- ``asr_word_phones``: whether ASR output spells each word's phones (unit ids) before the word's text ids;
- ``audio_units``: whether every audio frame the model writes (or continues) is its unit, then its codec ids;
- ``tts_word_phones``: whether the TTS prompt's text spells each word's phones (unit ids) before the word;
- ``slu_transcript``: whether SLU output first writes the transcript (as ASR would), then ``<slu>``, then the
  intent and slots;
- ``schema_version``: bumped when the meaning of a field changes.

Presets are factory functions (``alm_debug`` … ``alm_base``) taking the vocabulary (or its layout).
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, LlamaConfig

from alm.vocab import Vocabulary

SCHEMA_VERSION = 1
INPUT_SPEECH = ("units", "codec", "both")


@strict
class AlmConfig(LlamaConfig):
    """Configuration of :class:`alm.model.AlmForCausalLM`.

    Args (besides ``LlamaConfig``'s ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
    ``num_key_value_heads``, ``intermediate_size``, ``max_position_embeddings``, ``tie_word_embeddings`` …):
        vocab_layout: the vocabulary layout dict; sets ``vocab_size`` and ``pad/bos/eos_token_id``.
        num_codebooks: codebooks per codec frame the model uses; defaults to the layout's.
        input_speech: ``"units"`` (HuBERT-style units in prompts), ``"codec"`` or ``"both"``.
        collapse_units: prompt units have runs of repeats merged (the format the model was trained on).
        drop_unit_blanks: prompt units leave out unit 0, the CTC blank of ``"phone"`` units, after collapsing
            (prompts ~40% shorter, one unit per recognized phone).
        voice_seconds: seconds of the voice prompt (codec tokens of the target voice) in TTS / S2ST prompts.
        asr_context: the model was trained with ASR prompts that sometimes carry earlier text
            (``<asr> <lang> <text> … </text> <units> …``), so long-form decoding may feed it the previous chunk's.
        asr_word_phones: the model was trained to write ASR output as "copy, then spell": before each word's
            text ids come the word's phones as unit ids (``<text> p p p word p p word … </text>``; "phone"
            units only). Decoding then allows unit ids inside the ASR text segment and drops them from the text.
        audio_units: the model was trained to write each audio frame (TTS, S2ST, continuation; and to read the frames
            of a continuation prompt) as the frame's unit followed by its codec ids, ``u c_1 … c_K`` (a semantic
            stream before the acoustic one, as Moshi's semantic first codebook). Decoding allows a unit id at
            the start of each frame and keeps the codec ids; voice prompts stay codec only.
        tts_word_phones: the model was trained with TTS prompts whose text spells each word's phones (espeak-ng's,
            as unit ids) before the word, ``<text> p p p word p p word … </text>`` ("phone" units only), as
            classic TTS front ends give the acoustic model phonemes; ``synthesize`` phonemizes the text the same way.
        slu_transcript: the model was trained to write SLU output as transcript first, then the understanding:
            ``<text> transcript <slu> intent | slot = value </text>`` (the transcript as its ASR writes it, spelled
            with ``asr_word_phones``): a chain of thought through the task it reads best. ``understand`` returns
            both parts.
        rope_theta: RoPE base; stored in ``rope_parameters`` as transformers 5 expects.
        schema_version: version of this config's schema (:data:`SCHEMA_VERSION`).
    """

    model_type = "alm"

    vocab_layout: dict | None = None
    num_codebooks: int | None = None
    input_speech: str = "units"
    collapse_units: bool = True
    drop_unit_blanks: bool = False
    voice_seconds: float = 3.0
    asr_context: bool = False
    asr_word_phones: bool = False
    audio_units: bool = False
    tts_word_phones: bool = False
    slu_transcript: bool = False
    rope_theta: float = 10000.0
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self, **kwargs: Any) -> None:
        if self.rope_parameters is None:
            self.rope_parameters = {"rope_type": "default", "rope_theta": float(self.rope_theta)}
        else:
            self.rope_theta = float(self.rope_parameters.get("rope_theta", self.rope_theta))
        if self.vocab_layout is not None:
            vocab = Vocabulary.from_dict(self.vocab_layout)
            self.vocab_size = vocab.size
            self.pad_token_id, self.bos_token_id, self.eos_token_id = vocab.pad_id, vocab.bos_id, vocab.eos_id
            if self.num_codebooks is None:
                self.num_codebooks = vocab.num_codebooks
            if not 1 <= self.num_codebooks <= vocab.num_codebooks:
                raise ValueError(f"num_codebooks={self.num_codebooks} but the vocabulary holds "
                                 f"1..{vocab.num_codebooks} codebooks")
        if self.input_speech not in INPUT_SPEECH:
            raise ValueError(f"input_speech must be one of {INPUT_SPEECH}, got {self.input_speech!r}")
        if not self.voice_seconds > 0:
            raise ValueError(f"voice_seconds must be positive, got {self.voice_seconds}")
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(f"config schema_version {self.schema_version} is newer than this code's "
                             f"{SCHEMA_VERSION}: upgrade alm")
        super().__post_init__(**kwargs)

    def vocabulary(self) -> Vocabulary:
        """A layout-only :class:`Vocabulary` (ids and ranges; load ``tokenizer.json`` for text)."""
        if self.vocab_layout is None:
            raise ValueError("this AlmConfig has no vocab_layout")
        return Vocabulary.from_dict(self.vocab_layout)


AutoConfig.register("alm", AlmConfig)


def _layout(vocab: Vocabulary | dict[str, Any]) -> dict[str, Any]:
    return vocab.to_dict() if isinstance(vocab, Vocabulary) else dict(vocab)


def _preset(vocab: Vocabulary | dict[str, Any], dims: dict[str, Any], overrides: dict[str, Any]) -> AlmConfig:
    return AlmConfig(**{"vocab_layout": _layout(vocab), **dims, **overrides})


def alm_debug(vocab: Vocabulary | dict[str, Any], **overrides: Any) -> AlmConfig:
    """Tiny, for tests: hidden 32, 2 layers, 4 heads (2 KV), tied embeddings; 19k decoder params + 32 per id."""
    return _preset(vocab, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               intermediate_size=64, max_position_embeddings=1024, tie_word_embeddings=True),
                   overrides)


def alm_tiny(vocab: Vocabulary | dict[str, Any], **overrides: Any) -> AlmConfig:
    """CPU-trainable: hidden 256, 4 layers, 4 heads; 3.4M decoder params + 256 per vocabulary id (tied):
    5.6M with 4k text ids, 500 units and 4 x 1024 codec ids."""
    return _preset(vocab, dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                               intermediate_size=768, max_position_embeddings=4096, tie_word_embeddings=True),
                   overrides)


def alm_small(vocab: Vocabulary | dict[str, Any], **overrides: Any) -> AlmConfig:
    """GPU: hidden 512, 8 layers, 8 heads (4 KV); 25M decoder params + 2 x 512 per vocabulary id (untied):
    34M with the layout above."""
    return _preset(vocab, dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                               intermediate_size=1536, max_position_embeddings=8192, tie_word_embeddings=False),
                   overrides)


def alm_base(vocab: Vocabulary | dict[str, Any], **overrides: Any) -> AlmConfig:
    """GPU: hidden 1024, 16 layers, 16 heads (8 KV); 189M decoder params + 2 x 1024 per vocabulary id:
    206M with the layout above."""
    return _preset(vocab, dict(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16,
                               num_key_value_heads=8, intermediate_size=2816, max_position_embeddings=8192,
                               tie_word_embeddings=False),
                   overrides)


PRESETS = {"alm_debug": alm_debug, "alm_tiny": alm_tiny, "alm_small": alm_small, "alm_base": alm_base}
