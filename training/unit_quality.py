"""Phone-level quality of discrete units, as in the HuBERT paper: phone purity, cluster purity and PNMI.

Frame phone labels come from MBROLA, which speaks exactly the phone durations it is given: ``espeak-ng -v mb-XX
-q --pho TEXT`` writes the phone sequence with durations (ms) and ``mbrola`` turns that ``.pho`` file into
audio. The audio is *not* trimmed, so phone ``i`` occupies ``[sum(d[:i]), sum(d[:i+1]))`` ms of the waveform
(to within a sample of rounding per phone). Unit frame ``f`` (20 ms, centred on ``20 f + 10`` ms) gets the phone
under its centre. Labels are ``"<lang>:<phone>"`` in the voice's MBROLA alphabet (``"en:@U"``, ``"es:rr"``);
silence (``_``) is ``"sil"`` in both languages.

With ``y`` the phone and ``z`` the unit of a frame and ``P(y, z)`` their joint frequency over all frames:

- phone purity ``= sum_z max_y P(y, z)``: how well the majority phone of each unit predicts the phone;
- cluster purity ``= sum_y max_z P(y, z)``: how well the majority unit of each phone predicts the unit;
- PNMI ``= I(y; z) / H(y)``: the fraction of phone uncertainty a unit removes (1: units determine phones).

More units raise phone purity and PNMI and lower cluster purity, so compare tokenizers of equal ``K`` or read
all three together.

    python -m training.unit_quality --units codec/pretrained/units/mfcc codec/pretrained/units/hubert
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codec.audio import SAMPLE_RATE, load_audio
from codec.units import FRAME_RATE, UnitTokenizer, num_frames
from training.data.engines import _PHO_MODIFIER, MBROLA_DIR, EngineError, _run
from training.data.grammar import generate_pairs
from training.data.voices import by_id

log = logging.getLogger(__name__)

SILENCE = "sil"
DEFAULT_VOICES = ("us1", "us2", "en1", "es1", "mx1")
SPANISH_VOICES = frozenset({"es1", "es2", "es3", "es4", "mx1", "mx2", "vz1"})

Phones = list[tuple[str, float]]  # (phone, duration in ms)


def parse_pho(text: str) -> Phones:
    """``(phone, duration_ms)`` of each line of an MBROLA ``.pho`` file (comments and blank lines skipped)."""
    phones: Phones = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].startswith(";"):
            continue
        try:
            phones.append((parts[0], float(parts[1])))
        except ValueError:
            continue  # a directive such as "#" flush lines carries no duration
    return phones


def synthesize_phones(voice: str, text: str) -> tuple[np.ndarray, Phones]:
    """Speak ``text`` with MBROLA voice ``voice`` through espeak-ng's phoneme output.

    Args:
        voice: an MBROLA database (``us1``, ``es1``, ...); pitch and rate come from the corpus' speaker
            ``mbrola-<voice>``.
        text: the sentence (English for ``us*``/``en1``, Spanish for ``es*``/``mx*``/``vz1``).

    Returns:
        ``(wav [T] float32 at 16 kHz, untrimmed; phones with durations in ms)``.

    Raises:
        EngineError: espeak-ng or mbrola missing or failing, or no phones.
    """
    speaker = by_id(f"mbrola-{voice}")
    pitch, rate = str(speaker.pitch or 50), str(speaker.rate or 165)
    pho = _run(["espeak-ng", "-v", f"mb-{voice}", "-p", pitch, "-s", rate, "-q", "--pho"], stdin=text).stdout
    pho_text = pho.decode("utf-8", errors="replace")
    if voice in SPANISH_VOICES:  # espeak's Spanish names (``a/``) spelled as the Spanish databases know them
        pho_text = _PHO_MODIFIER.sub(r"\1\t", pho_text)
    phones = parse_pho(pho_text)
    if not phones:
        raise EngineError(f"espeak-ng gave no phones for {text[:40]!r} with mb-{voice}")
    with tempfile.TemporaryDirectory(prefix="alm-pho-") as tmp:
        pho_path, wav_path = Path(tmp) / "in.pho", Path(tmp) / "out.wav"
        pho_path.write_text(pho_text, encoding="utf-8")
        _run(["mbrola", "-e", str(MBROLA_DIR / voice / voice), str(pho_path), str(wav_path)])
        wav = load_audio(wav_path, SAMPLE_RATE).numpy()
    return wav, phones


def frame_labels(phones: Phones, n_frames: int, lang: str) -> np.ndarray:
    """Phone under the centre of each 20 ms frame: ``[n_frames]`` str labels (past the last phone: silence)."""
    ends = np.cumsum([d for _, d in phones])  # ms
    names = [SILENCE if p == "_" else f"{lang}:{p}" for p, _ in phones] + [SILENCE]
    centres = (np.arange(n_frames) + 0.5) * 1000.0 / FRAME_RATE  # ms
    return np.asarray(names, dtype=object)[np.searchsorted(ends, centres, side="right")]


def phone_labelled_set(n_sentences: int, voices: Sequence[str] = DEFAULT_VOICES, seed: int = 1234
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sentences spoken by MBROLA voices in turn, with exact frame phone labels.

    Sentences are the English or Spanish sides (by voice) of :func:`training.data.grammar.generate_pairs`.

    Args:
        n_sentences: how many utterances.
        voices: MBROLA databases, used round-robin.
        seed: sentence draw.

    Returns:
        ``(wav [T] float32 16 kHz, labels [ceil(T / 320)] str)`` per utterance.
    """
    pairs = generate_pairs(n_sentences, seed)
    random.Random(seed).shuffle(pairs)
    out = []
    for i, pair in enumerate(pairs):
        voice = voices[i % len(voices)]
        lang = "es" if voice in SPANISH_VOICES else "en"
        wav, phones = synthesize_phones(voice, pair.es if lang == "es" else pair.en)
        total = sum(d for _, d in phones) * SAMPLE_RATE / 1000
        if abs(len(wav) - total) > 0.01 * SAMPLE_RATE + 2 * len(phones):
            raise EngineError(f"mb-{voice}: {len(wav)} samples for {total:.0f} samples of phones; the phone "
                              "durations do not describe this audio")
        out.append((wav, frame_labels(phones, num_frames(len(wav)), lang)))
    return out


def purity_metrics(units: np.ndarray, phones: np.ndarray) -> dict[str, float]:
    """Phone purity, cluster purity and PNMI of frame units against frame phones (module docstring).

    Args:
        units: ``[N]`` unit of each frame (any hashable labels).
        phones: ``[N]`` phone of each frame.

    Returns:
        ``{"phone_purity", "cluster_purity", "pnmi", "n_frames"}``.
    """
    units, phones = np.asarray(units), np.asarray(phones)
    if units.shape != phones.shape or units.ndim != 1 or units.size == 0:
        raise ValueError(f"need two equal non-empty 1-D arrays, got {units.shape} and {phones.shape}")
    _, z = np.unique(units, return_inverse=True)
    _, y = np.unique(phones, return_inverse=True)
    joint = np.zeros((y.max() + 1, z.max() + 1))  # [phones, units]
    np.add.at(joint, (y, z), 1.0)
    joint /= joint.sum()
    py, pz = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mutual = float((joint[nz] * np.log(joint[nz] / (py[:, None] * pz[None, :])[nz])).sum())
    h_y = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    return {
        "phone_purity": float(joint.max(0).sum()),
        "cluster_purity": float(joint.max(1).sum()),
        "pnmi": mutual / h_y if h_y > 0 else 1.0,
        "n_frames": int(units.size),
    }


def unit_quality(tokenizer: UnitTokenizer, labelled: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """:func:`purity_metrics` of ``tokenizer``'s units over all frames of a :func:`phone_labelled_set`.

    Also ``pnmi_chance``: the PNMI of the same units shuffled across frames. With few frames per (phone, unit)
    cell the plug-in mutual information is biased upwards; this is that bias, to read PNMI against.
    """
    units, phones = [], []
    for wav, labels in labelled:
        u = tokenizer.encode(wav).numpy()
        if len(u) != len(labels):
            raise ValueError(f"{len(u)} units for {len(labels)} labelled frames: frame rates disagree")
        units.append(u)
        phones.append(labels)
    z, y = np.concatenate(units), np.concatenate(phones)
    chance = purity_metrics(np.random.default_rng(0).permutation(z), y)["pnmi"]
    return {**purity_metrics(z, y), "pnmi_chance": chance}


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table of :func:`unit_quality` results keyed by tokenizer name."""
    lines = ["| units | K | phone purity | cluster purity | PNMI | PNMI of shuffled units | frames |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['num_units']} | {r['phone_purity']:.3f} | {r['cluster_purity']:.3f} | "
                     f"{r['pnmi']:.3f} | {r.get('pnmi_chance', float('nan')):.3f} | {r['n_frames']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", nargs="+", required=True, help="saved UnitTokenizer directories")
    p.add_argument("--sentences", type=int, default=40)
    p.add_argument("--voices", nargs="+", default=list(DEFAULT_VOICES))
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    t0 = time.time()
    labelled = phone_labelled_set(args.sentences, tuple(args.voices), args.seed)
    seconds = sum(len(w) for w, _ in labelled) / SAMPLE_RATE
    log.info("%d sentences, %.1f s of speech, %d phone classes, synthesized in %.0f s", len(labelled), seconds,
             len(set(np.concatenate([y for _, y in labelled]))), time.time() - t0)
    rows = {}
    for d in args.units:
        tok = UnitTokenizer.from_pretrained(d)
        rows[d] = {"kind": tok.kind, "num_units": tok.num_units, **unit_quality(tok, labelled)}
    table = format_table(rows)
    sys.stdout.write(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
