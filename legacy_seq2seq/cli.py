"""Command line of the baselines: a typer app the project's CLI mounts as ``alm legacy``::

    alm legacy transcribe hello.wav --model runs/legacy-ctc/final
    alm legacy synthesize "good morning" --model runs/legacy-tacotron2/final --vocoder runs/legacy-hifigan/final \\
        -o out.wav
    alm legacy translate hola.wav --model runs/legacy-translatotron/final --vocoder runs/legacy-hifigan/final -o out.wav
    alm legacy export runs/legacy-fastspeech2/final legacy_seq2seq/pretrained/fastspeech2   # float16 copy
    alm legacy speakers --model runs/legacy-fastspeech2/final      # the voices of a multi-speaker model

Synthesized audio passes through :func:`legacy_seq2seq.inference.set_output_hook`'s hook (inside
:func:`legacy_seq2seq.inference.synthesize`), where the composition root installs the project's watermark; this
module imports neither ``alm`` nor ``safety``. Bad input (a missing model directory, an unreadable audio file,
text the model cannot spell) ends the command with exit code 1 and a one-line message, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

legacy_app = typer.Typer(
    help="Classic baselines (CTC, RNN-T, LAS; Tacotron 2, FastSpeech 2 + HiFi-GAN; Translatotron).",
    no_args_is_help=True)
AUDIO_EXTS = (".wav", ".flac", ".ogg")


@contextmanager
def _user_errors() -> Iterator[None]:
    """A bad model directory, bad audio or bad text end the command with its message and exit code 1."""
    try:
        yield
    except (ValueError, OSError) as e:  # CheckpointError and AudioInputError are ValueErrors
        typer.secho(f"Error: {e}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from e


@legacy_app.command("transcribe")
def transcribe(
    file: Path = typer.Argument(..., help="Audio file (WAV, FLAC, OGG, MP3, ...)."),
    model: Path = typer.Option(..., "--model", help="CTC, RNN-T or LAS directory (training.train_legacy's final)."),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
    beam: int = typer.Option(1, "--beam", min=1, help="Beam width; 1 is greedy (LAS: length-normalized, coverage "
                             "penalty 0.2)."),
) -> None:
    """Speech to text with a baseline recognizer (greedy, or beam search with --beam N)."""
    from legacy_seq2seq.inference import load_legacy
    from legacy_seq2seq.inference import transcribe as run

    with _user_errors():
        text = run(load_legacy(model, device), file, device, beam=beam)
    typer.echo(text)


@legacy_app.command("synthesize")
def synthesize(
    text: str = typer.Argument(..., help="Text to speak."),
    model: Path = typer.Option(..., "--model", help="Tacotron 2 or FastSpeech 2 directory."),
    vocoder: Path = typer.Option(..., "--vocoder", help="HiFi-GAN directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
    speaker: str | None = typer.Option(None, "--speaker", help="Voice of a multi-speaker model (default: its first; "
                                       "`alm legacy speakers --model DIR` lists them)."),
    language: str = typer.Option("en", "--language", "-l", help="Language of the text (en, es): a model trained "
                                 "on phonemes phonemizes it in this language."),
) -> None:
    """Text to speech (16 kHz) with a baseline acoustic model and vocoder; the output hook (watermark) applies."""
    from legacy_seq2seq.inference import synthesize as run

    _speak(out, model, vocoder, device,
           lambda acoustic, voc: run(acoustic, text, voc, device, speaker=speaker, language=language))


@legacy_app.command("speakers")
def list_speakers(
    model: Path = typer.Option(..., "--model", help="Tacotron 2 or FastSpeech 2 directory."),
) -> None:
    """The voices of a multi-speaker acoustic model, one per line (none for a single-voice model)."""
    from legacy_seq2seq.inference import speakers

    with _user_errors():
        names = speakers(model)
    if not names:
        typer.echo(f"{model}: one voice (trained without speaker ids)")
    for name in names:
        typer.echo(name)


@legacy_app.command("translate")
def translate(
    file: Path = typer.Argument(..., help="Source speech (Spanish for the shipped recipe): WAV, FLAC, OGG, MP3, ..."),
    model: Path = typer.Option(..., "--model", help="Translatotron directory (training.train_legacy's final)."),
    vocoder: Path = typer.Option(..., "--vocoder", help="HiFi-GAN directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
) -> None:
    """Speech-to-speech translation with Translatotron + HiFi-GAN; the output hook (watermark) applies."""
    from legacy_seq2seq.inference import translate as run

    _speak(out, model, vocoder, device, lambda s2st, voc: run(s2st, file, voc, device))


@legacy_app.command("export")
def export(
    source: Path = typer.Argument(..., help="A trained model directory (e.g. runs/legacy-fastspeech2/final)."),
    target: Path = typer.Argument(..., help="Where to write the copy (replaced if it exists)."),
) -> None:
    """Copy a model directory with float16 weights (half the size, for shipping); it loads like the original."""
    from legacy_seq2seq.checkpoint import WEIGHTS_NAME, half_precision_copy

    with _user_errors():
        out = half_precision_copy(source, target)
    before, after = (source / WEIGHTS_NAME).stat().st_size, (out / WEIGHTS_NAME).stat().st_size
    typer.echo(f"{out} ({after / 1e6:.1f} MB of weights, from {before / 1e6:.1f} MB)")


def _speak(out: Path, model: Path, vocoder: Path, device: str, generate: Callable[[Any, Any], Any]) -> None:
    """Load ``model`` and ``vocoder``, write ``generate(model, vocoder)``'s waveform to ``out`` and say so."""
    if out.suffix.lower() not in AUDIO_EXTS:
        raise typer.BadParameter(f"{out}: the output must end in {', '.join(AUDIO_EXTS)}", param_hint="-o")
    from codec.audio import save_audio
    from legacy_seq2seq.inference import load_legacy

    with _user_errors():
        loaded, voc = load_legacy(model, device), load_legacy(vocoder, device)
        audio = generate(loaded, voc)
        save_audio(out, audio, voc.features.sample_rate)
    typer.echo(f"{out} ({len(audio) / voc.features.sample_rate:.2f} s)")


__all__ = ["legacy_app"]
