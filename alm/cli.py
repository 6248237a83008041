"""The ``alm`` command line: the one composition root, importing each part lazily inside its subcommand."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import typer

app = typer.Typer(help="alm: one audio-language model for ASR, TTS, speech translation, SLU and continuation.",
                  no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Make and inspect speech corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")
codec_app = typer.Typer(help="Encode and decode audio with the neural codec; train one.", no_args_is_help=True)
app.add_typer(codec_app, name="codec")


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
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Synthesize a bilingual multi-speaker corpus: 16 kHz WAVs + manifest.jsonl (resumable)."""
    _setup_logging(verbose)
    from training.data import synthesize_corpus

    lang_t = tuple(x.strip() for x in langs.split(",") if x.strip())
    try:
        report = synthesize_corpus(out, hours=hours, seed=seed, langs=lang_t, jobs=jobs)
    except ValueError as e:
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
) -> None:
    """Decode codec tokens to a 16 kHz WAV."""
    from codec import load_codec, save_audio
    from codec.token_file import decode_tokens, load_tokens

    tok = load_codec(model)
    try:
        wav = decode_tokens(load_tokens(tokens), tok)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    save_audio(out, wav.clamp(-1, 1), tok.sample_rate)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
