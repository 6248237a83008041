"""The ``alm`` command line: the one composition root, importing each part lazily inside its subcommand."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from alm.api import AudioLanguageModel

app = typer.Typer(help="alm: one audio-language model for ASR, TTS, speech translation, SLU and continuation.",
                  no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Make and inspect speech corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")
codec_app = typer.Typer(help="Encode and decode audio with the neural codec; train one.", no_args_is_help=True)
app.add_typer(codec_app, name="codec")


def _mount_legacy() -> None:
    """``alm legacy ...``: the baselines' own typer app (its module imports only typer; the models load lazily
    inside its commands)."""
    from legacy_seq2seq.cli import legacy_app

    app.add_typer(legacy_app, name="legacy")


_mount_legacy()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Corpus directory (created; resumed if it exists)."),
    hours: float = typer.Option(1.0, "--hours", help="Target hours of speech."),
    seed: int = typer.Option(0, "--seed", help="Fixes sentences, speakers and augmentation."),
    langs: str = typer.Option("en,es", "--langs", help="Comma-separated languages: en, es."),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Parallel synthesis processes."),
    engines: str = typer.Option("", "--engines", help="Comma-separated synthesizers to use (espeak, mbrola, "
                                "flite, pico, rhvoice, asterisk = the real prompts); default all."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Synthesize a bilingual multi-speaker corpus: 16 kHz WAVs + manifest.jsonl (resumable)."""
    _setup_logging(verbose)
    from training.data import synthesize_corpus

    lang_t = tuple(x.strip() for x in langs.split(",") if x.strip())
    engine_t = tuple(x.strip() for x in engines.split(",") if x.strip()) or None
    try:
        report = synthesize_corpus(out, hours=hours, seed=seed, langs=lang_t, jobs=jobs, engines=engine_t)
    except (ValueError, RuntimeError) as e:
        raise typer.BadParameter(str(e)) from e
    c = report.counts
    typer.echo(f"corpus: {report.out_dir}  ({report.utterances} utterances, {report.hours:.2f} h, "
               f"{report.wall_s:.0f} s wall, {report.skipped_done} resumed, {report.failed} failed)")
    typer.echo(f"splits: {c['by_split']}  hours: {c['hours_by_split']}")
    typer.echo(f"languages: {c['by_lang']}  tasks: {c['by_task']}")
    typer.echo(f"speakers: {c['speakers']} ({c['speakers_by_split']}); test-only: {', '.join(c['test_only_speakers'])}")


@data_app.command("info")
def data_info(corpus: Path = typer.Argument(..., help="Corpus directory with manifest.jsonl.")) -> None:
    """Print a corpus' counts by split, language, task and speaker."""
    from training.data.corpus import read_manifest
    from training.data.synth import summarize

    typer.echo(json.dumps(summarize(read_manifest(corpus)), indent=2, ensure_ascii=False))


@codec_app.command("encode")
def codec_encode(
    audio: Path = typer.Argument(..., help="Audio file (WAV, FLAC, OGG, MP3, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Token file to write (.npz)."),
    kbps: float = typer.Option(4.0, "--kbps", help="Bitrate: 0.5 kbps per codebook (0.5 .. 4)."),
    model: Path | None = typer.Option(None, "--model", help="Saved codec directory (default: the shipped one)."),
) -> None:
    """Encode audio to codec tokens."""
    from codec import AudioInputError, load_audio, load_codec
    from codec.token_file import save_tokens

    tok = load_codec(model)
    per_cb = tok.frame_rate * math.log2(tok.cardinality) / 1000
    k = round(kbps / per_cb)
    if not 1 <= k <= tok.max_codebooks:
        raise typer.BadParameter(f"--kbps must be between {per_cb:g} and {per_cb * tok.max_codebooks:g}")
    tok.set_num_codebooks(k)
    try:
        wav = load_audio(audio, tok.sample_rate)
    except AudioInputError as e:
        raise typer.BadParameter(str(e)) from e
    codes = tok.encode(wav)
    save_tokens(out, codes, tok, len(wav))
    typer.echo(f"{audio}: {len(wav) / tok.sample_rate:.2f} s -> {out} ({codes.shape[1]} codebooks x "
               f"{codes.shape[2]} frames, {tok.bitrate / 1000:g} kbps)")


@codec_app.command("decode")
def codec_decode(
    tokens: Path = typer.Argument(..., help="Token file from `alm codec encode`."),
    out: Path = typer.Option(..., "--out", "-o", help="WAV file to write."),
    model: Path | None = typer.Option(None, "--model", help="Saved codec directory (default: the shipped one)."),
    watermark: bool = typer.Option(True, "--watermark/--no-watermark",
                                   help="Embed the keyed watermark (turning it off is logged as a warning)."),
) -> None:
    """Decode codec tokens to a 16 kHz WAV (watermarked: decoded tokens are synthesized speech)."""
    import numpy as np

    from alm.api import apply_watermark
    from codec import load_codec, save_audio
    from codec.token_file import decode_tokens, load_tokens

    tok = load_codec(model)
    try:
        wav = decode_tokens(load_tokens(tokens), tok)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    audio = wav.clamp(-1, 1).cpu().numpy().astype(np.float32)
    if watermark:
        audio = apply_watermark(audio, tok.sample_rate)
    else:
        logging.getLogger(__name__).warning("--no-watermark: %s carries no watermark", out)
    save_audio(out, audio, tok.sample_rate)
    typer.echo(f"{tokens} -> {out} ({len(wav) / tok.sample_rate:.2f} s)")


@codec_app.command("train")
def codec_train(
    corpus: Path = typer.Option(..., "--corpus", help="Corpus directory (from `alm data synth`)."),
    out: Path = typer.Option(..., "--out", help="Run directory (resumed if it holds a checkpoint)."),
    steps: int = typer.Option(12000, "--steps"),
    batch_size: int = typer.Option(8, "--batch-size"),
    adv_start: int | None = typer.Option(None, "--adv-start", help="Step at which the adversarial stage starts."),
    threads: int = typer.Option(0, "--threads", help="Torch threads (0: default)."),
) -> None:
    """Train the neural codec (see training/train_codec.py); the result lands in OUT/final."""
    _setup_logging(False)
    from training.train_codec import TrainCodecConfig, train

    train(corpus, out, TrainCodecConfig(steps=steps, batch_size=batch_size, adv_start=adv_start, threads=threads))
    typer.echo(f"codec saved to {out / 'final'}")


# --- the model's tasks ---------------------------------------------------------------------------------------
# Options shared by the task commands (typer reads these defaults; reusing one object per option is fine).
MODEL_OPT = typer.Option(None, "--model", help="Checkpoint directory (default: the shipped model).")
DEVICE_OPT = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda.")
# The decoding options every generating command takes (alm.api.GenerationOptions), added to each command's
# signature by @_generating so they are declared once: (name, type, typer option).
GENERATION_OPTIONS: list[tuple[str, Any, Any]] = [
    ("strategy", str, typer.Option("greedy", "--strategy", help="greedy, beam, sample, top_k or top_p.")),
    ("temperature", float | None, typer.Option(None, "--temperature", help="Sampling temperature (sampling).")),
    ("top_k", int | None, typer.Option(None, "--top-k", help="Keep the k likeliest ids (sampling strategies).")),
    ("top_p", float | None, typer.Option(None, "--top-p", help="Nucleus mass (sampling strategies).")),
    ("repetition_penalty", float | None, typer.Option(None, "--repetition-penalty", help="> 1 discourages repeats.")),
    ("num_beams", int | None, typer.Option(None, "--num-beams", help="Beams (--strategy beam).")),
    ("max_new_tokens", int | None, typer.Option(None, "--max-new-tokens",
                                                help="Cap on generated ids (default: from the input).")),
    ("seed", int | None, typer.Option(None, "--seed", help="Seed for sampling.")),
]
AUDIO_EXTS = (".wav", ".flac", ".ogg")


def _fail(message: str) -> typer.Exit:
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input, a bad checkpoint or bad options end the command with their message, not a traceback."""
    try:
        yield
    except (ValueError, OSError) as e:  # AudioInputError, CheckpointError, VocabularyError are ValueErrors
        raise _fail(str(e)) from e


def _load(model: Path | None, device: str) -> AudioLanguageModel:
    from transformers.utils import logging as hf_logging

    from alm.api import load

    hf_logging.disable_progress_bar()
    with _user_errors():
        return load(model, device=device)


def _options(**opts: Any) -> dict[str, Any]:
    from alm.api import GenerationOptions

    try:
        GenerationOptions(**opts)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    return {k: v for k, v in opts.items() if v is not None}


def _generating(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command the decoding options of :data:`GENERATION_OPTIONS`; it receives them validated, as one
    ``opts`` dict of the ones set (``**opts`` for the API call)."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name != "opts"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
             for name, kind, default in GENERATION_OPTIONS]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> None:
        opts = _options(**{name: kwargs.pop(name) for name, _, _ in GENERATION_OPTIONS})
        fn(opts=opts, **kwargs)

    command.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    hints = {k: v for k, v in typing.get_type_hints(fn).items() if k != "opts"}
    command.__annotations__ = {**hints, **{name: kind for name, kind, _ in GENERATION_OPTIONS}}
    return command


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in AUDIO_EXTS:
        raise typer.BadParameter(f"{out}: the output must end in {', '.join(AUDIO_EXTS)}", param_hint="-o")


@app.command("transcribe")
@_generating
def transcribe(
    files: list[Path] = typer.Argument(..., help="Audio files."),
    language: str | None = typer.Option(None, "--language", "-l", help="en or es (default: detected)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file."),
    model: Path | None = MODEL_OPT, device: str = DEVICE_OPT, opts: dict[str, Any] | None = None,
) -> None:
    """Speech to text."""
    opts = opts or {}
    alm_model = _load(model, device)
    for f in files:
        with _user_errors():
            r = alm_model.transcribe(f, language=language, **opts)
        if as_json:
            typer.echo(json.dumps({"file": str(f), "text": r.text, "language": r.language}, ensure_ascii=False))
        else:
            typer.echo(r.text if len(files) == 1 else f"{f}\t{r.text}")


@app.command("synthesize")
@_generating
def synthesize(
    text: str = typer.Argument(..., help="Text to speak."),
    out: Path = typer.Option(..., "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    language: str = typer.Option("en", "--language", "-l", help="en or es."),
    voice: Path | None = typer.Option(None, "--voice",
                                      help="Recording whose voice to use (its start, as long as the model's voice "
                                           "prompts)."),
    model: Path | None = MODEL_OPT, device: str = DEVICE_OPT, opts: dict[str, Any] | None = None,
) -> None:
    """Text to speech (16 kHz)."""
    _check_out(out)
    opts = opts or {}
    alm_model = _load(model, device)
    with _user_errors():
        r = alm_model.synthesize(text, language=language, voice=voice, **opts)
        r.save(out)
    typer.echo(f"{out} ({r.duration:.2f} s)")


@app.command("translate")
@_generating
def translate(
    file: Path = typer.Argument(..., help="Speech to translate."),
    to: str = typer.Option(..., "--to", help="Target language: en or es."),
    out: Path = typer.Option(..., "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    source: str | None = typer.Option(None, "--from", help="Source language (default: detected)."),
    voice: Path | None = typer.Option(None, "--voice", help="Voice to speak in (default: the speaker's own)."),
    model: Path | None = MODEL_OPT, device: str = DEVICE_OPT, opts: dict[str, Any] | None = None,
) -> None:
    """Speech in one language to speech in another (prints the target text when the model writes one)."""
    _check_out(out)
    opts = opts or {}
    alm_model = _load(model, device)
    with _user_errors():
        r = alm_model.translate_speech(file, target_language=to, source_language=source, voice=voice, **opts)
        r.save(out)
    if r.text is not None:
        typer.echo(r.text)
    typer.echo(f"{out} ({r.duration:.2f} s)")


@app.command("understand")
@_generating
def understand(
    file: Path = typer.Argument(..., help="A spoken command."),
    language: str = typer.Option("en", "--language", "-l", help="en or es."),
    model: Path | None = MODEL_OPT, device: str = DEVICE_OPT, opts: dict[str, Any] | None = None,
) -> None:
    """Intent and slots of a spoken command, as JSON."""
    opts = opts or {}
    alm_model = _load(model, device)
    with _user_errors():
        r = alm_model.understand(file, language=language, **opts)
    typer.echo(json.dumps({"intent": r.intent, "slots": r.slots, "text": r.text, "transcript": r.transcript},
                          ensure_ascii=False))


@app.command("continue")
@_generating
def continue_(
    file: Path = typer.Argument(..., help="Speech to continue."),
    out: Path = typer.Option(..., "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    seconds: float = typer.Option(3.0, "--seconds", help="Seconds of new speech."),
    include_prompt: bool = typer.Option(False, "--include-prompt", help="Write the prompt before the continuation."),
    model: Path | None = MODEL_OPT, device: str = DEVICE_OPT, opts: dict[str, Any] | None = None,
) -> None:
    """More speech in the voice of FILE."""
    _check_out(out)
    opts = opts or {}
    alm_model = _load(model, device)
    with _user_errors():
        r = alm_model.continue_speech(file, seconds=seconds, include_prompt=include_prompt, **opts)
        r.save(out)
    typer.echo(f"{out} ({r.duration:.2f} s)")


@app.command("eval")
def eval_(
    checkpoint: Path | None = typer.Argument(None, help="Checkpoint directory (default: the shipped model)."),
    corpus: Path = typer.Option(..., "--corpus", help="Corpus directory (from `alm data synth`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report directory: results.json, results.md, eval.png."),
    split: str = typer.Option("test", "--split", help="Split to measure (test: held-out speakers)."),
    tasks: str = typer.Option("asr,tts,s2st,slu,continue", "--tasks", help="Comma-separated tasks."),
    max_per_task: int = typer.Option(60, "--max-per-task", min=1, help="Utterances per task."),
    strategy: str = typer.Option("greedy", "--strategy", help="Decoding strategy for every task."),
    peer: bool = typer.Option(True, "--peer/--no-peer", help="Also run pocketsphinx on the English ASR audio."),
    threads: int = typer.Option(0, "--threads", help="Torch threads (0: default)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Measure every task of a checkpoint on a corpus split; print the Markdown table."""
    _setup_logging(verbose)
    import torch

    from training.evaluation.eval_alm import EvalConfig, evaluate, markdown

    if threads:
        torch.set_num_threads(threads)
    try:
        cfg = EvalConfig(split=split, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
                         max_per_task=max_per_task, strategy=strategy, peer=peer)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    with _user_errors():
        report = evaluate(checkpoint, corpus, out, cfg)
    typer.echo(markdown(report))
    typer.echo(f"written: {out / 'results.json'}, {out / 'results.md'}, {out / 'eval.png'}")


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="Training checkpoint (OUT/checkpoints/step-N, plain or DeepSpeed/ZeRO) "
                                                "or a run directory (its newest checkpoint)."),
    out: Path = typer.Argument(..., help="Release checkpoint directory to write (what `alm.load` reads)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Convert a training checkpoint into the release format: config + safetensors + tokenizer + codec + units."""
    _setup_logging(verbose)
    from training.export import export_release

    with _user_errors():
        written = export_release(checkpoint, out)
    typer.echo(f"exported {written}")


# --- serving -------------------------------------------------------------------------------------------------
@app.command("serve")
def serve(
    model: Path | None = MODEL_OPT,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most requests of one task decoded together."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0.0,
                                      help="How long a batch waits for more requests after its first."),
    queue_size: int = typer.Option(64, "--queue-size", min=1, help="Requests waiting per task; more get 503."),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: dynamic int8 quantization of the "
                                                                 "decoder's linear layers (CPU)."),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="--no-batching: one request at a time."),
    device: str = DEVICE_OPT,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve every task over HTTP with dynamic batching (endpoints: alm/server/app.py)."""
    _setup_logging(verbose)
    import uvicorn

    from alm.server import ServerSettings, create_app

    try:
        settings = ServerSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size,
                                  batching=batching, quantize=quantize)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    alm_model = _load(model, device)
    if quantize == "int8":
        from alm.quantize import quantize_int8

        with _user_errors():
            quantize_int8(alm_model)
    uvicorn.run(create_app(alm_model, settings), host=host, port=port, log_level="debug" if verbose else "info")


# --- deepfake detection --------------------------------------------------------------------------------------
EXIT_BONA_FIDE, EXIT_GENERATED, EXIT_BAD_INPUT = 0, 1, 2


@app.command("detect-fake")
def detect_fake(
    files: list[Path] = typer.Argument(..., help="Audio files (WAV, FLAC, MP3, anything ffmpeg reads)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list with an object per file."),
    model: Path | None = typer.Option(None, "--model", help="Detector directory (default: the shipped one, "
                                                            "safety/pretrained/deepfake)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Decision threshold in [0, 1] (default: the "
                                                                     "detector's own, its validation EER point)."),
) -> None:
    """Judge each FILE bona fide or generated by this project's models (safety.deepfake); exit 0 if every file is
    bona fide, 1 if any is generated, 2 on bad input (a missing or unreadable file, silent audio, a bad detector)."""
    from codec import AudioInputError, load_audio
    from safety.deepfake import DeepfakeDetector, DeepfakeModelError, load_default

    def bad(message: str) -> typer.Exit:
        typer.echo(f"error: {message}", err=True)
        return typer.Exit(EXIT_BAD_INPUT)

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise bad(f"--threshold must be in [0, 1], got {threshold}")
    try:
        detector = load_default() if model is None else DeepfakeDetector.load(model)
    except DeepfakeModelError as e:
        raise bad(str(e)) from None
    results, status = [], EXIT_BONA_FIDE
    for path in files:
        try:
            d = detector.detect(load_audio(path, detector.config.sample_rate), threshold=threshold)
        except AudioInputError as e:  # DeepfakeInputError (silent, too short) included
            status = EXIT_BAD_INPUT
            results.append({"file": str(path), "error": str(e)})
            if not as_json:
                typer.echo(f"error: {e}", err=True)
            continue
        if d.generated and status == EXIT_BONA_FIDE:
            status = EXIT_GENERATED
        results.append({"file": str(path), **d.to_dict()})
        if not as_json:
            typer.echo(f"{path}: {d.decision} (score {d.score:.4f}, threshold {d.threshold:.4f}; "
                       f"{d.duration_s:.2f} s, {len(d.window_scores)} window(s))")
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    raise typer.Exit(status)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
