"""Speaker ids for the multi-speaker acoustic models (Tacotron 2, FastSpeech 2): a table of learned voice embeddings.

A model trained on many voices without knowing which one speaks must predict their average, which is no voice:
the mel it learns is blurred across timbres. Giving it the voice's id (ESPnet's ``spks``, added to the encoder
output as its ``spk_embed_integration_type: add``) lets it learn each voice apart. The table starts at zero, so
adding it to a trained single-voice model (a warm start, ``init_from``) leaves that model's output unchanged at
step 0. A model without speakers (``()``) has no table and no extra weights, so older directories load as before.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def check_speakers(speakers: Iterable[str]) -> tuple[str, ...]:
    """``speakers`` as a tuple (a config read from JSON holds a list); refuses empty or repeated names."""
    names = tuple(speakers)
    if any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"speaker names must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"speaker names must be unique, got {names!r}")
    return names


class SpeakerTable(nn.Module):
    """Voice embeddings ``[len(speakers), dim]`` (zero-initialised) added to a hidden sequence.

    Args:
        speakers: the voices' names; a voice's id is its index. Empty: a single-voice model (no weights).
        dim: embedding size (the hidden size it is added to).
    """

    def __init__(self, speakers: tuple[str, ...], dim: int) -> None:
        super().__init__()
        self.speakers = speakers
        self.embedding = nn.Embedding(len(speakers), dim) if speakers else None
        if self.embedding is not None:
            nn.init.zeros_(self.embedding.weight)

    def id(self, name: str) -> int:
        """The id of voice ``name``; ``ValueError`` naming the known voices for any other."""
        if not self.speakers:
            raise ValueError(f"this model has one voice (trained without speaker ids): do not name a speaker "
                             f"({name!r})")
        if name not in self.speakers:
            raise ValueError(f"unknown speaker {name!r}; this model's speakers: {', '.join(self.speakers)}")
        return self.speakers.index(name)

    def add(self, hidden: torch.Tensor, speaker_ids: torch.Tensor | None, keep: torch.Tensor | None = None
            ) -> torch.Tensor:
        """``hidden [B, N, D]`` + the voices' embeddings ``[B, 1, D]`` (times ``keep [B, N, 1]``, 0 on padding).

        ``speaker_ids [B]`` long (``None``: voice 0). A single-voice model returns ``hidden`` unchanged and
        refuses speaker ids; ids outside the table raise ``ValueError``.
        """
        if self.embedding is None:
            if speaker_ids is not None:
                raise ValueError("this model has one voice (no speakers in its config): do not pass speaker ids")
            return hidden
        if speaker_ids is None:
            speaker_ids = torch.zeros(hidden.shape[0], dtype=torch.long, device=hidden.device)
        speaker_ids = speaker_ids.to(hidden.device).long().reshape(-1)
        if speaker_ids.numel() != hidden.shape[0]:
            raise ValueError(f"need one speaker id per item: {speaker_ids.numel()} ids, batch of {hidden.shape[0]}")
        if bool(((speaker_ids < 0) | (speaker_ids >= len(self.speakers))).any()):
            raise ValueError(f"speaker ids must be in [0, {len(self.speakers)}), got {speaker_ids.tolist()}")
        voice = self.embedding(speaker_ids)[:, None, :].to(hidden.dtype)  # [B, 1, D]
        return hidden + (voice if keep is None else voice * keep)


__all__ = ["SpeakerTable", "check_speakers"]
