"""alm: one decoder-only audio-language model over a vocabulary shared by text, codec tokens and units.

Importing ``alm`` registers the ``"alm"`` model type with transformers' ``AutoConfig`` and
``AutoModelForCausalLM``, so ``AutoModelForCausalLM.from_pretrained(checkpoint)`` works.
"""

from alm.config import AlmConfig, alm_base, alm_debug, alm_small, alm_tiny
from alm.generation import TaskConstraintLogitsProcessor, generate_for_task, generation_config_for
from alm.model import AlmForCausalLM
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

__version__ = "0.1.0"

__all__ = [
    "LANGUAGES", "SPECIAL_TOKENS", "TASKS", "AlmConfig", "AlmForCausalLM", "Example", "TaskConstraintLogitsProcessor",
    "TaskOutput", "TokenRange", "Vocabulary", "VocabularyError", "__version__", "allowed_next", "alm_base",
    "alm_debug", "alm_small", "alm_tiny", "asr_example", "asr_prompt", "continue_example", "continue_prompt",
    "generate_for_task", "generation_config_for", "parse_output", "s2st_example", "s2st_prompt", "slu_example",
    "slu_prompt", "task_of", "train_text_tokenizer", "tts_example", "tts_prompt",
]
