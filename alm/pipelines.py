"""Hugging Face pipelines over an alm checkpoint, registered by ``import alm``::

    from transformers import pipeline
    asr = pipeline("automatic-speech-recognition", model=ckpt)       # asr(wav) -> {"text"}
    tts = pipeline("text-to-speech", model=ckpt)                     # tts(text) -> {"audio", "sampling_rate"}
    s2st = pipeline("speech-to-speech-translation", model=ckpt)      # s2st(wav, target_language="en")
                                                                     #   -> {"audio", "sampling_rate", "text"}
    slu = pipeline("spoken-language-understanding", model=ckpt)      # slu(wav) -> {"intent", "slots", "text",
                                                                     #   "transcript"}
    cont = pipeline("voice-continuation", model=ckpt)                # cont(wav, seconds=3) -> {"audio", ...}

Each pipeline runs the three stages of :class:`alm.api.AudioLanguageModel` (prepare -> run -> finish) as the
pipeline's preprocess -> forward -> postprocess; a list of inputs gives a list of outputs. Inputs of any length
work as they do in the Python API: audio longer than one chunk is decoded long-form (:mod:`alm.longform`) and
text of several sentences spoken sentence by sentence, all inside the forward stage. The ASR pipeline takes
``return_timestamps=True`` as transformers' does: ``{"text", "chunks": [{"text", "timestamp": (start, end)}]}``
with one chunk per segment (seconds in the input).

The standard task names (``automatic-speech-recognition``, ``text-to-audio`` and its alias ``text-to-speech``)
keep working for every other model: what is registered under them is a *dispatcher* that builds our pipeline
when the model is an alm model (``config.model_type == "alm"``) and the stock transformers pipeline otherwise.
Its registry entry keeps the stock model classes, default model and type, with :class:`AlmForCausalLM` appended
to the model classes so that ``pipeline(task, model=ckpt_dir)`` can load an alm checkpoint. The only change for
stock models: a tokenizer / feature extractor the stock pipeline requires is loaded softly, and the dispatcher
raises if it is missing, because an alm checkpoint has no feature extractor for ``transformers`` to load.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any, ClassVar

from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from alm.api import AudioLanguageModel, GenerationOptions, Result, SpeechResult, TaskJob, TranscriptionResult
from alm.checkpoint import save_checkpoint
from alm.model import AlmForCausalLM

log = logging.getLogger(__name__)

COMPONENTS = ("tokenizer", "feature_extractor", "image_processor", "video_processor", "processor")


def is_alm_model(model: object) -> bool:
    """An :class:`AudioLanguageModel`, or a model whose config says ``model_type == "alm"``."""
    return isinstance(model, AudioLanguageModel) or getattr(getattr(model, "config", None), "model_type", "") == "alm"


class AlmPipeline(Pipeline):
    """Base of the alm pipelines: one task of :class:`AudioLanguageModel` as a transformers ``Pipeline``.

    ``model`` is an :class:`AlmForCausalLM` loaded from a checkpoint directory (its codec, units and vocabulary
    are loaded from the same directory) or an :class:`AudioLanguageModel`. Call parameters are the task
    method's keyword arguments (``language``, ``voice`` ...) plus :class:`GenerationOptions` fields, flat or
    in ``generate_kwargs={...}``.
    """

    alm_task: ClassVar[str]
    task_params: ClassVar[tuple[str, ...]] = ("sample_rate",)
    output_params: ClassVar[tuple[str, ...]] = ()  # parameters of :meth:`format`
    # An alm checkpoint carries its own tokenizers: transformers should load none.
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model: AlmForCausalLM | AudioLanguageModel, *args: Any, **kwargs: Any) -> None:
        for name in COMPONENTS:  # transformers may hand over components it found: the checkpoint has its own
            kwargs.pop(name, None)
        self.alm = model if isinstance(model, AudioLanguageModel) else AudioLanguageModel.from_decoder(model)
        super().__init__(self.alm.model, *args, **kwargs)
        self.alm.to(self.device)

    def _sanitize_parameters(self, generate_kwargs: dict[str, Any] | None = None,
                             forward_params: dict[str, Any] | None = None, **kwargs: Any
                             ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess = {k: kwargs.pop(k) for k in list(kwargs) if k in self.task_params}
        postprocess = {k: kwargs.pop(k) for k in list(kwargs) if k in self.output_params}
        forward = {**(forward_params or {}), **(generate_kwargs or {}), **kwargs}
        unknown = sorted(set(forward) - set(GenerationOptions.names()))
        if unknown:
            raise ValueError(f"{type(self).__name__} got unknown parameter(s) {unknown}; it takes "
                             f"{', '.join(self.task_params + self.output_params)} and the generation options "
                             f"{', '.join(GenerationOptions.names())}")
        GenerationOptions(**forward)  # validate now rather than after preprocessing
        return preprocess, forward, postprocess

    def preprocess(self, inputs: Any, **params: Any) -> dict[str, Any]:
        if isinstance(inputs, dict):  # {"raw" | "array": waveform, "sampling_rate": Hz}, as datasets' Audio gives
            audio = inputs.get("raw", inputs.get("array"))
            params = {**params, "sample_rate": inputs.get("sampling_rate", params.get("sample_rate"))}
            inputs = audio
        if self.alm.is_long_input(self.alm_task, inputs, **params):  # long-form: all of it in the forward stage
            return {"long": (inputs, params)}
        return {"job": self.alm.prepare(self.alm_task, inputs, **params)}

    def _forward(self, model_inputs: dict[str, Any], **options: Any) -> dict[str, Any]:
        if "long" in model_inputs:
            source, params = model_inputs["long"]
            return {"result": self.alm.run_task(self.alm_task, source, options, **params)}
        job: TaskJob = model_inputs["job"]
        language, generated = self.alm.run(job, GenerationOptions(**options))
        return {"job": job, "language": language, "generated": generated}

    def postprocess(self, model_outputs: dict[str, Any], **output_params: Any) -> dict[str, Any]:
        result = model_outputs.get("result")
        if result is None:
            result = self.alm.finish(model_outputs["job"], model_outputs["language"], model_outputs["generated"])
        return self.format(result, **output_params)

    def format(self, result: Result) -> dict[str, Any]:
        """The pipeline's output dict for one result."""
        raise NotImplementedError

    def get_iterator(self, inputs: Any, num_workers: int, batch_size: int, *args: Any) -> Any:
        # Items run one at a time (generation is per prompt): no collation of jobs, whatever batch_size says.
        return super().get_iterator(inputs, num_workers, 1, *args)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save the whole checkpoint (decoder, vocabulary, codec, units) to ``save_directory``."""
        save_checkpoint(save_directory, self.alm.model, self.alm.vocab, self.alm.codec, self.alm.units)


def _speech(result: SpeechResult) -> dict[str, Any]:
    return {"audio": result.audio, "sampling_rate": result.sample_rate}


class AlmSpeechRecognitionPipeline(AlmPipeline):
    """``automatic-speech-recognition``: audio (path, bytes, array, ``{"raw", "sampling_rate"}``) ->
    ``{"text": ...}``. Parameters: ``language`` (``None``: detected); ``return_timestamps=True`` adds
    ``"chunks": [{"text", "timestamp": (start, end)}]``, one per segment, seconds in the input."""

    alm_task = "asr"
    task_params = ("language", "sample_rate")
    output_params = ("return_timestamps",)

    def _sanitize_parameters(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess, forward, postprocess = super()._sanitize_parameters(*args, **kwargs)
        if postprocess.get("return_timestamps") not in (True, False, None):  # "word" / "char" in transformers
            raise ValueError(f"return_timestamps={postprocess['return_timestamps']!r}: alm gives segment-level "
                             "timestamps only (return_timestamps=True)")
        return preprocess, forward, postprocess

    def format(self, result: TranscriptionResult, return_timestamps: bool | None = False) -> dict[str, Any]:
        out: dict[str, Any] = {"text": result.text}
        if return_timestamps:
            out["chunks"] = [{"text": seg.text, "timestamp": (round(seg.start, 3), round(seg.end, 3))}
                             for seg in result.segments]
        return out


class AlmTextToSpeechPipeline(AlmPipeline):
    """``text-to-audio`` / ``text-to-speech``: text -> ``{"audio": [T] float32, "sampling_rate": 16000}``.
    Parameters: ``language``, ``voice`` (audio whose voice to use), ``sample_rate`` (of a ``voice`` array)."""

    alm_task = "tts"
    task_params = ("language", "voice", "sample_rate")

    def format(self, result: SpeechResult) -> dict[str, Any]:
        return _speech(result)


class AlmSpeechTranslationPipeline(AlmPipeline):
    """``speech-to-speech-translation``: audio -> ``{"audio", "sampling_rate", "text"}`` (``text``: the
    target-language text when the model writes it). Parameters: ``target_language`` (required),
    ``source_language``, ``voice``, ``sample_rate``."""

    alm_task = "s2st"
    task_params = ("target_language", "source_language", "voice", "sample_rate")

    def format(self, result: SpeechResult) -> dict[str, Any]:
        return {**_speech(result), "text": result.text}


class AlmSpokenLanguageUnderstandingPipeline(AlmPipeline):
    """``spoken-language-understanding``: audio -> ``{"intent", "slots", "text", "transcript"}`` (``transcript``:
    ``""`` unless the model writes one, ``AlmConfig.slu_transcript``). Parameter: ``language``."""

    alm_task = "slu"
    task_params = ("language", "sample_rate")

    def format(self, result: Any) -> dict[str, Any]:
        return {"intent": result.intent, "slots": dict(result.slots), "text": result.text,
                "transcript": result.transcript}


class AlmVoiceContinuationPipeline(AlmPipeline):
    """``voice-continuation``: audio -> ``{"audio", "sampling_rate"}``, more speech in the same voice.
    Parameters: ``seconds`` (3), ``include_prompt``, ``sample_rate``."""

    alm_task = "continue"
    task_params = ("seconds", "include_prompt", "sample_rate")

    def format(self, result: SpeechResult) -> dict[str, Any]:
        return _speech(result)


# --- registration --------------------------------------------------------------------------------------------
class StandardTaskDispatcher:
    """Registered under a standard task name: ``cls(model=..., **kwargs)`` builds :attr:`alm_class` for an alm
    model and the task's stock pipeline (:attr:`stock_impl`, as the registry held it) for any other model.

    The component flags relax the stock pipeline's "required" (``True``) to "load if present" (``None``) so
    that ``transformers.pipeline`` does not fail on an alm checkpoint; for stock models the dispatcher then
    checks that every required component was found.
    """

    stock_impl: ClassVar[Any]
    alm_class: ClassVar[type[AlmPipeline]]

    def __new__(cls, model: Any = None, *args: Any, **kwargs: Any) -> Any:
        if is_alm_model(model):
            return cls.alm_class(model, *args, **kwargs)
        stock = _resolve(cls.stock_impl)
        if kwargs.get("processor") is None:
            for name in COMPONENTS:
                if getattr(stock, f"_load_{name}", None) is True and kwargs.get(name) is None:
                    where = getattr(model, "name_or_path", None) or type(model).__name__
                    raise ValueError(f"{stock.__name__} needs a {name.replace('_', ' ')} and none was given or "
                                     f"found for {where}")
        return stock(model, *args, **kwargs)


def _resolve(impl: Any) -> type:
    if isinstance(impl, str):
        module, name = impl.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)
    return impl


def _dispatcher(task: str, stock_impl: Any, alm_class: type[AlmPipeline]) -> type[StandardTaskDispatcher]:
    stock = _resolve(stock_impl)
    flags = {f"_load_{name}": (None if getattr(stock, f"_load_{name}", None) is True
                               else getattr(stock, f"_load_{name}", None)) for name in COMPONENTS}
    name = "".join(part.title() for part in task.split("-")) + "Dispatcher"
    doc = f"``{task}``: {alm_class.__name__} for alm models, {stock.__name__} for every other model."
    return type(name, (StandardTaskDispatcher,), {"stock_impl": stock_impl, "alm_class": alm_class,
                                                   "__doc__": doc, "__module__": __name__, **flags})


CUSTOM_TASKS: dict[str, type[AlmPipeline]] = {
    "speech-to-speech-translation": AlmSpeechTranslationPipeline,
    "spoken-language-understanding": AlmSpokenLanguageUnderstandingPipeline,
    "voice-continuation": AlmVoiceContinuationPipeline,
}
STANDARD_TASKS: dict[str, type[AlmPipeline]] = {
    "automatic-speech-recognition": AlmSpeechRecognitionPipeline,
    "text-to-audio": AlmTextToSpeechPipeline,  # "text-to-speech" is transformers' alias of it
}


def register_pipelines() -> None:
    """Register the alm pipelines with transformers (idempotent; ``import alm`` calls it)."""
    registry = PIPELINE_REGISTRY.supported_tasks
    for task, klass in CUSTOM_TASKS.items():
        if registry.get(task, {}).get("impl") is not klass:
            PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=klass, pt_model=AlmForCausalLM, type="multimodal")
    for task, klass in STANDARD_TASKS.items():
        entry = registry[task]
        impl = entry["impl"]
        if isinstance(impl, type) and issubclass(impl, StandardTaskDispatcher):
            continue
        pt = tuple(entry.get("pt", ())) + (AlmForCausalLM,)
        base_logger = logging.getLogger("transformers.pipelines.base")
        level = base_logger.level
        base_logger.setLevel(logging.ERROR)  # silence "already registered. Overwriting": we wrap, not replace
        try:
            PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=_dispatcher(task, impl, klass), pt_model=pt,
                                                default=entry.get("default"), type=entry.get("type"))
        finally:
            base_logger.setLevel(level)


__all__ = [
    "AlmPipeline", "AlmSpeechRecognitionPipeline", "AlmSpeechTranslationPipeline",
    "AlmSpokenLanguageUnderstandingPipeline", "AlmTextToSpeechPipeline", "AlmVoiceContinuationPipeline",
    "StandardTaskDispatcher", "is_alm_model", "register_pipelines",
]
