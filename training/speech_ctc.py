"""Auxiliary CTC on the speech positions of the decoder: the acoustic grounding a decoder-only ASR lacks early on.

A decoder-only model learns to transcribe only once its text positions have learned *where* in the speech prompt
to look, and on a small corpus it prefers to memorise the training sentences instead (the train/valid gap of the
shipped model). Joint CTC/attention training (Watanabe et al., 2017; for decoder-only ASR, Tsunoo et al., 2023)
adds a monotonic alignment loss on the speech frames. Here it needs no new weights: the decoder's own output layer,
read at the positions of the prompt's speech segment (``<units> u… </units>`` or ``<audio> c… </audio>``) and
restricted to the text range plus ``<pad>`` as the CTC blank, is trained with ``torch.nn.functional.ctc_loss``
towards the transcript of that speech (``Example.ctc_targets``). Those positions carry no loss otherwise (the
prompt is not scored unless ``prompt_weight > 0``), so the two losses do not compete for them; the hidden states
that the text positions attend to become phonetic, and the tied output layer ties them to the text embeddings.
The decoder is causal, so this is a streaming CTC: each position sees only the speech before it.

Only the loss is written here (the CTC itself is torch's); nothing of it is needed at inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from alm.vocab import Vocabulary

SPEECH_INPUT_TASKS = ("asr", "slu", "s2st")  # the tasks whose prompt holds speech


def speech_spans(input_ids: torch.Tensor, vocab: Vocabulary) -> list[tuple[int, int] | None]:
    """The half-open positions ``[start, end)`` of each row's input speech segment (between ``<units>`` and
    ``</units>``, else between the first ``<audio>`` and ``</audio>``), or ``None`` for a row of a task without
    speech input (TTS and continuation rows: their ``<audio>`` segment is what they generate).

    Args:
        input_ids: ``[B, L]`` int64, each row starting with its task token.
    """
    pairs = [(vocab.token_id("<units>"), vocab.token_id("</units>")),
             (vocab.token_id("<audio>"), vocab.token_id("</audio>"))]
    speech_tasks = {vocab.task_id(t) for t in SPEECH_INPUT_TASKS}
    out: list[tuple[int, int] | None] = []
    for row in input_ids.tolist():
        span = None
        for open_id, close_id in pairs if row and row[0] in speech_tasks else ():
            if open_id in row:
                start = row.index(open_id) + 1
                end = row.index(close_id, start) if close_id in row[start:] else len(row)
                if end > start:
                    span = (start, end)
                    break
        out.append(span)
    return out


def speech_ctc_loss(logits: torch.Tensor, input_ids: torch.Tensor, targets: Sequence[Sequence[int] | None],
                    vocab: Vocabulary) -> tuple[torch.Tensor, int]:
    """CTC loss of the speech positions' text predictions against each row's transcript.

    Args:
        logits: ``[B, L, V]`` the decoder's logits.
        input_ids: ``[B, L]`` the sequences they were computed from.
        targets: per row, the transcript as text ids (``Example.ctc_targets``) or ``None`` (row not scored).
        vocab: the model's vocabulary (its text range and ``<pad>``, the blank).

    Returns:
        ``(loss, rows)``: the mean over scored rows of the CTC loss divided by the transcript length (torch's
        ``reduction="mean"``; rows whose speech is too short for their transcript count as 0,
        ``zero_infinity``), and how many rows were scored. ``(0, 0)`` (a zero that keeps the graph) when none is.
    """
    spans = speech_spans(input_ids, vocab)
    text = vocab.text
    columns = torch.tensor([vocab.pad_id, *range(text.start, text.end)], device=logits.device)
    rows = [b for b, (s, t) in enumerate(zip(spans, targets)) if s is not None and t]
    if not rows:
        return logits.sum() * 0.0, 0
    longest = max(spans[b][1] - spans[b][0] for b in rows)
    frames = logits.new_zeros((len(rows), longest, len(columns)), dtype=torch.float32)
    input_lengths, flat, target_lengths = [], [], []
    for i, b in enumerate(rows):
        start, end = spans[b]
        frames[i, : end - start] = logits[b, start:end].float().index_select(-1, columns)
        input_lengths.append(end - start)
        ids = [int(x) for x in targets[b]]
        if any(x not in text for x in ids):
            raise ValueError(f"row {b}: CTC targets must be text ids in [{text.start}, {text.end})")
        flat.extend(x - text.start + 1 for x in ids)  # 0 is the blank
        target_lengths.append(len(ids))
    log_probs = frames.log_softmax(-1).transpose(0, 1)  # [T, N, C]
    loss = F.ctc_loss(log_probs, torch.tensor(flat, device=logits.device), torch.tensor(input_lengths),
                      torch.tensor(target_lengths), blank=0, reduction="mean", zero_infinity=True)
    return loss, len(rows)
