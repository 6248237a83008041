"""``alm-watermark``: verify and embed the toolkit's keyed watermark from the command line.

    alm-watermark detect FILE... [--json] [--key-file PATH] [--no-speed-search] [--no-codec-layer]
    alm-watermark embed IN -o OUT --message N [--key-file PATH] [--codec-layer]

``detect`` prints, per file: the decision at the stated false-positive rate, the probability, the decoded payload
with each bit's confidence, the spans where the mark is, and one score per second. Exit status: 0 when every file
is watermarked, 1 when at least one readable file is not, 2 on bad input (a missing, unreadable or non-audio file,
or a bad key file: a one-line message, no traceback), which wins over 1.

The key is ``--key-file`` if given, else ``$ALM_WATERMARK_KEY`` / ``$ALM_WATERMARK_KEY_FILE``, else the public
development key (see :mod:`safety.keys`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Detect or embed the alm toolkit's keyed audio watermark.",
)

EXIT_MARKED, EXIT_NOT_MARKED, EXIT_BAD_INPUT = 0, 1, 2


def _key(key_file: Path | None):  # noqa: ANN202 - a WatermarkKey; keys are imported with the command
    from safety.keys import WatermarkKeyError, configured_key, load_key

    try:
        return load_key(key_file) if key_file is not None else configured_key()
    except WatermarkKeyError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _per_second(scores: np.ndarray, hop_s: float) -> list[float]:
    """Mean frame score in each whole or partial second."""
    per = max(1, round(1.0 / hop_s))
    return [round(float(np.mean(scores[i : i + per])), 2) for i in range(0, len(scores), per)]


def _report(name: str, d, duration_s: float) -> str:  # noqa: ANN001 - a Detection
    verdict = "WATERMARKED" if d.detected else "not watermarked"
    lines = [
        f"{name}: {verdict} (probability {d.probability:.6f}, score {d.score:.2f}, threshold {d.threshold:.2f} "
        f"for a false-positive rate of {d.false_positive_rate:g}; {duration_s:.2f} s)"
    ]
    if d.layer == "codec":
        lines.append(f"  found by the codec layer (z {d.codec_score:.2f}): the audio went through the project's neural "
                     "codec, which erases the payload layer")
    if d.detected and d.speed != 1.0:
        lines.append(f"  speed change undone: the audio runs at {d.speed:.3f}x the marked original's speed")
    if d.payload is not None:
        lines.append(f"  payload: {d.payload} (0x{d.payload:04X}, bits {''.join(map(str, d.bits))})")
    else:
        lines.append("  payload: none")
    lines.append("  bit confidence: " + " ".join(f"{c:.2f}" for c in d.bit_confidence))
    spans = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in d.spans) or "none"
    lines.append(f"  spans: {spans}")
    lines.append("  per-second scores: " + " ".join(f"{s:+.2f}" for s in _per_second(d.frame_scores, d.frame_hop_s)))
    return "\n".join(lines)


@app.command()
def detect(
    files: list[Path] = typer.Argument(..., help="audio files (WAV, FLAC, MP3, anything ffmpeg reads)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON list with an object per file"),
    key_file: Path | None = typer.Option(None, "--key-file", help="file holding the watermark key"),
    speed_search: bool = typer.Option(True, "--speed-search/--no-speed-search",
                                      help="when the plain scan finds nothing, also try speed changes of up to 10% "
                                           "(about 10x slower on unmarked audio)"),
    codec_layer: bool = typer.Option(True, "--codec-layer/--no-codec-layer",
                                     help="when both scans find nothing, test the layer that survives the project's "
                                          "neural codec (runs the codec's encoder, about 45x real time)"),
) -> None:
    """Look for the watermark in each FILE; exit 0 if all are watermarked, 1 if any is not, 2 on bad input."""
    from codec import AudioInputError, load_audio
    from safety.watermark import SAMPLE_RATE, WatermarkInputError
    from safety.watermark import detect as detect_watermark

    key = _key(key_file)
    results, status = [], EXIT_MARKED
    for path in files:
        try:
            wav = load_audio(path, sample_rate=SAMPLE_RATE).numpy()
            d = detect_watermark(wav, key=key, search_speed=speed_search, codec_layer=codec_layer)
        except (AudioInputError, WatermarkInputError) as e:
            status = EXIT_BAD_INPUT
            results.append({"file": str(path), "error": str(e)})
            if not as_json:
                typer.echo(f"error: {e}", err=True)
            continue
        if not d.detected and status == EXIT_MARKED:
            status = EXIT_NOT_MARKED
        duration_s = len(wav) / SAMPLE_RATE
        results.append({"file": str(path), "duration_s": round(duration_s, 3), **d.to_dict(),
                        "per_second_scores": _per_second(d.frame_scores, d.frame_hop_s)})
        if not as_json:
            typer.echo(_report(str(path), d, duration_s))
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    raise typer.Exit(status)


@app.command()
def embed(
    source: Path = typer.Argument(..., help="input audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="output file (.wav, .flac or .ogg)"),
    message: int = typer.Option(..., "--message", min=0, max=65535, help="16-bit payload, 0..65535"),
    key_file: Path | None = typer.Option(None, "--key-file", help="file holding the watermark key"),
    codec_layer: bool = typer.Option(False, "--codec-layer/--no-codec-layer",
                                     help="also embed the layer that survives the project's neural codec (what the "
                                          "toolkit's generated speech carries; slower than real time on a CPU, "
                                          "SNR about 16 dB)"),
) -> None:
    """Embed MESSAGE into SOURCE (resampled to 16 kHz mono) and write OUTPUT."""
    from codec import AudioInputError, load_audio, save_audio
    from safety.watermark import SAMPLE_RATE, WatermarkInputError
    from safety.watermark import embed as embed_watermark

    key = _key(key_file)
    try:
        wav = load_audio(source, sample_rate=SAMPLE_RATE).numpy()
        marked = embed_watermark(wav, message, key=key, codec_layer=codec_layer)
        save_audio(output, marked, SAMPLE_RATE)
    except (AudioInputError, WatermarkInputError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    noise = float(np.sum((marked.astype(np.float64) - wav) ** 2))
    snr = 10 * np.log10(float(np.sum(wav.astype(np.float64) ** 2)) / noise) if noise > 0 else float("inf")
    typer.echo(f"embedded message {message} (0x{message:04X}) into {output} (SNR {snr:.1f} dB, key {key.key_id})")


def main() -> None:
    """Console-script entry point (``alm-watermark``)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
