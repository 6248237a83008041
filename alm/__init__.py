"""alm: one decoder-only audio-language model over a vocabulary shared by text, codec tokens and units.

The user's surface::

    import alm
    model = alm.load()                      # the shipped default, or alm.load("path/to/checkpoint")
    model.transcribe("hello.wav").text

Importing ``alm`` registers the ``"alm"`` model type with transformers' ``AutoConfig`` and
``AutoModelForCausalLM``, so ``AutoModelForCausalLM.from_pretrained(checkpoint)`` works, and registers the
pipelines of :mod:`alm.pipelines`, so ``transformers.pipeline("automatic-speech-recognition", model=checkpoint)``
(and ``text-to-speech``, ``speech-to-speech-translation``, ``spoken-language-understanding``,
``voice-continuation``) works.
"""

from alm.api import (
    AudioLanguageModel,
    GenerationOptions,
    SpeechResult,
    TranscriptionResult,
    UnderstandingResult,
    load,
    set_watermark_hook,
)
from alm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from alm.config import AlmConfig, alm_base, alm_debug, alm_small, alm_tiny
from alm.generation import TaskConstraintLogitsProcessor, generate_for_task, generation_config_for
from alm.model import AlmForCausalLM
from alm.pipelines import register_pipelines
from alm.prompts import (
    Example,
    TaskOutput,
    allowed_next,
    asr_example,
    asr_prompt,
    continue_example,
    continue_prompt,
    parse_output,
    s2st_example,
    s2st_prompt,
    slu_example,
    slu_prompt,
    task_of,
    tts_example,
    tts_prompt,
)
from alm.vocab import LANGUAGES, SPECIAL_TOKENS, TASKS, TokenRange, Vocabulary, VocabularyError, train_text_tokenizer

register_pipelines()

__version__ = "0.1.0"

__all__ = [
    "LANGUAGES", "SPECIAL_TOKENS", "TASKS", "AlmConfig", "AlmForCausalLM", "AudioLanguageModel", "CheckpointError",
    "Example", "GenerationOptions", "SpeechResult", "TaskConstraintLogitsProcessor", "TaskOutput", "TokenRange",
    "TranscriptionResult", "UnderstandingResult", "Vocabulary", "VocabularyError", "__version__", "allowed_next",
    "alm_base", "alm_debug", "alm_small", "alm_tiny", "asr_example", "asr_prompt", "continue_example",
    "continue_prompt", "generate_for_task", "generation_config_for", "load", "load_checkpoint", "parse_output",
    "register_pipelines", "s2st_example", "s2st_prompt", "save_checkpoint", "set_watermark_hook", "slu_example",
    "slu_prompt", "task_of", "train_text_tokenizer", "tts_example", "tts_prompt",
]
