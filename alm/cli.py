"""The ``alm`` command line: the one composition root, importing each part lazily inside its subcommand."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

app = typer.Typer(help="alm: one audio-language model for ASR, TTS, speech translation, SLU and continuation.",
                  no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Make and inspect speech corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
