"""Batched generation: several prepared jobs of one task decoded together in one ``generate`` call.

:meth:`alm.api.AudioLanguageModel.run` decodes one job (one prompt per candidate language) at a time.
:func:`run_batch` decodes the candidate prompts of many jobs of the same task as the rows of one batch:

- prompts are **left-padded** with ``<pad>`` to the longest one, with an ``attention_mask`` that is 0 on the
  padding. transformers' ``generate`` derives ``position_ids`` from that mask (``cumsum - 1``), so every row's
  RoPE positions start at 0 on its first real token, exactly as when it is decoded alone;
- every row has the same padded prompt length, so the task's :class:`~alm.generation.TaskConstraintLogitsProcessor`
  (which reads the output as "ids after ``prompt_len``") works per row; each row gets its own processor with its
  own length budget, ``min_frames`` and ``s2st_text``;
- each row stops at its own budget (:class:`RowBudgetCriteria`), so a short prompt's output is cut where it would
  have been cut alone, not where the longest row's budget ends;
- with several candidate languages the likeliest output is kept, scored as :meth:`AudioLanguageModel.run` does
  (mean log-probability per generated id), in one batched forward;
- each job's output then passes the model's repetition guard (:meth:`AudioLanguageModel.guard_output`), as in
  :meth:`AudioLanguageModel.run`: an output that loops is decoded again, alone, with fallback settings.

Only greedy decoding is batched (its result does not depend on the batch); other strategies (beam, sampling)
fall back to :meth:`AudioLanguageModel.run` one job at a time. A job that fails (e.g. too long for the model's
context) fails alone: its :class:`BatchOutput` carries the error and the other jobs still run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from alm.api import AudioLanguageModel, GenerationOptions, TaskJob
from alm.generation import TaskConstraintLogitsProcessor, generation_config_for, model_budget, source_length

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutput:
    """What :meth:`AudioLanguageModel.run` returns for one job, or the error it raised.

    Attributes:
        language: the language generated in (given or detected); ``None`` when the task has none.
        ids: the new ids ``[G]`` (up to and including ``<eos>``); empty when there was nothing to generate.
        error: the exception this job raised (then ``language`` and ``ids`` are meaningless).
    """

    language: str | None
    ids: list[int]
    error: Exception | None = None

    def unwrap(self) -> tuple[str | None, list[int]]:
        """``(language, ids)`` as :meth:`AudioLanguageModel.run` gives them; raises the job's error."""
        if self.error is not None:
            raise self.error
        return self.language, self.ids


@dataclass(frozen=True)
class _Row:
    """One candidate prompt of one job."""

    job: int  # index into the jobs
    language: str | None
    prompt: list[int]
    budget: int  # max new ids for this row


class RowConstraints(LogitsProcessor):
    """One :class:`TaskConstraintLogitsProcessor` per row (each with its own budget); rows already past their
    budget are left alone (they are finished and their ids are discarded)."""

    def __init__(self, processors: Sequence[TaskConstraintLogitsProcessor], budgets: Sequence[int],
                 prompt_len: int) -> None:
        if len(processors) != len(budgets):
            raise ValueError(f"{len(processors)} processors for {len(budgets)} budgets")
        self.processors, self.budgets, self.prompt_len = list(processors), list(budgets), prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """``input_ids`` ``[B, prompt_len + G]``, ``scores`` ``[B, V]`` -> masked scores ``[B, V]``."""
        generated = input_ids.shape[1] - self.prompt_len
        rows = [scores[b:b + 1] if generated >= self.budgets[b] else proc(input_ids[b:b + 1], scores[b:b + 1])
                for b, proc in enumerate(self.processors)]
        return torch.cat(rows, dim=0)


class RowBudgetCriteria(StoppingCriteria):
    """Stops each row when it has generated its own number of new ids (``[B]`` bool per step)."""

    def __init__(self, budgets: Sequence[int], prompt_len: int) -> None:
        self.budgets = torch.tensor(list(budgets), dtype=torch.long)
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs: object
                 ) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_len
        return (self.budgets.to(input_ids.device) <= generated).to(torch.bool)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists to one batch.

    Returns:
        ``(input_ids, attention_mask)``, both ``[B, max P]`` int64; the mask is 1 on real ids, 0 on padding.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("left_pad needs at least one prompt and no empty prompt")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[b, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def _budget(model: AudioLanguageModel, job: TaskJob, prompt: list[int], options: GenerationOptions) -> int:
    """The new-id budget :meth:`AudioLanguageModel.run` would use; raises ``ValueError`` beyond the context."""
    k = model.num_codebooks
    budget = (options.max_new_tokens or job.max_new_tokens
              or model_budget(model.model.config, job.task, source_length(model.vocab, job.task, prompt, k), k))
    context = model.model.config.max_position_embeddings
    if len(prompt) + budget > context:
        raise ValueError(f"the input is too long for this model: its prompt takes {len(prompt)} tokens and the "
                         f"output up to {budget} more, beyond the model's {context} positions; use shorter "
                         "audio or text")
    return budget


@torch.no_grad()
def generate_rows(model: AudioLanguageModel, task: str, rows: Sequence[_Row], jobs: Sequence[TaskJob],
                  options: GenerationOptions) -> list[list[int]]:
    """Greedy-decode the rows (candidate prompts of ``jobs``, all of ``task``) in one ``generate`` call.

    Returns:
        One list of new ids ``[G_b]`` per row, cut at the row's budget and after its ``<eos>``.
    """
    vocab = model.vocab
    k = model.num_codebooks
    input_ids, mask = left_pad([r.prompt for r in rows], vocab.pad_id, model.device)  # [B, P], [B, P]
    width = input_ids.shape[1]
    budgets = [r.budget for r in rows]
    overrides = {**options.generate_kwargs(), "max_new_tokens": max(budgets)}
    config = generation_config_for(vocab, task, 0, num_codebooks=k, strategy="greedy", **overrides)
    processors = [TaskConstraintLogitsProcessor(vocab, task, width, num_codebooks=k, max_new_tokens=r.budget,
                                                min_frames=jobs[r.job].min_frames, s2st_text=jobs[r.job].s2st_text,
                                                asr_units=model.model.config.asr_word_phones,
                                                audio_units=model.model.config.audio_units,
                                                slu_transcript=model.model.config.slu_transcript)
                  for r in rows]
    out = model.model.generate(input_ids, attention_mask=mask, generation_config=config,
                               logits_processor=LogitsProcessorList([RowConstraints(processors, budgets, width)]),
                               stopping_criteria=StoppingCriteriaList([RowBudgetCriteria(budgets, width)]))
    new_ids = []
    for b, r in enumerate(rows):
        new = out[b, width:width + r.budget].tolist()
        if vocab.eos_id in new:
            new = new[: new.index(vocab.eos_id) + 1]
        new_ids.append(new)
    log.debug("%s: batch of %d rows, prompts %d..%d ids -> %d new ids at most", task, len(rows),
              min(len(r.prompt) for r in rows), width, max(len(n) for n in new_ids) if new_ids else 0)
    return new_ids


@torch.no_grad()
def mean_logprobs(model: AudioLanguageModel, prompts: Sequence[list[int]], outputs: Sequence[list[int]]
                  ) -> list[float]:
    """Mean log-probability per generated id of each ``prompt + output`` (``-inf`` for an empty output), in one
    left-padded forward; position ids follow the mask, as in ``generate``."""
    scores = [-math.inf] * len(prompts)
    todo = [i for i, out in enumerate(outputs) if out]
    if not todo:
        return scores
    seqs = [prompts[i] + outputs[i] for i in todo]
    ids, mask = left_pad(seqs, model.vocab.pad_id, model.device)  # [B, L]
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    logp = model.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float().log_softmax(-1)
    width = ids.shape[1]
    for b, i in enumerate(todo):
        g = len(outputs[i])
        # position t predicts t + 1: the last g ids are predicted by positions [width - g - 1, width - 1)
        pred = logp[b, width - g - 1: width - 1]  # [G, V]
        scores[i] = float(pred.gather(1, ids[b, width - g:, None]).mean())
    return scores


def run_batch(model: AudioLanguageModel, jobs: Sequence[TaskJob], options: GenerationOptions | None = None
              ) -> list[BatchOutput]:
    """Stage 2 of several jobs at once: what ``[model.run(job, options) for job in jobs]`` gives, in one batch.

    Args:
        model: the model whose :meth:`~AudioLanguageModel.prepare` made the jobs.
        jobs: prepared jobs, all of the same task.
        options: decoding options (default greedy). Only greedy is batched; other strategies run one job at a
            time through :meth:`AudioLanguageModel.run`.

    Returns:
        One :class:`BatchOutput` per job, in the order of ``jobs``.

    Raises:
        ValueError: the jobs are of different tasks.
    """
    options = options or GenerationOptions()
    tasks = {job.task for job in jobs}
    if len(tasks) > 1:
        raise ValueError(f"run_batch takes jobs of one task, got {sorted(tasks)}")
    if not jobs:
        return []
    if options.strategy != "greedy" or len(jobs) == 1:
        return [_run_one(model, job, options) for job in jobs]
    task = next(iter(tasks))
    results: list[BatchOutput | None] = [None] * len(jobs)
    rows: list[_Row] = []
    for j, job in enumerate(jobs):
        if not job.candidates:
            results[j] = BatchOutput(job.language, [])
            continue
        try:
            rows.extend(_Row(j, lang, prompt, _budget(model, job, prompt, options))
                        for lang, prompt in job.candidates.items())
        except ValueError as e:
            results[j] = BatchOutput(job.language, [], e)
            rows = [r for r in rows if r.job != j]
    if rows:
        try:
            new_ids = generate_rows(model, task, rows, jobs, options)
        except Exception as e:  # noqa: BLE001 - a batch-level failure fails every job in it, each with the error
            log.exception("batched generation of %d %s jobs failed", len(jobs), task)
            new_ids = None
            for r in rows:
                results[r.job] = BatchOutput(jobs[r.job].language, [], e)
        if new_ids is not None:
            _pick_languages(model, rows, new_ids, results)
            _guard(model, jobs, results, options)
    return [r if r is not None else BatchOutput(None, [], RuntimeError("job produced no output")) for r in results]


def _pick_languages(model: AudioLanguageModel, rows: list[_Row], new_ids: list[list[int]],
                    results: list[BatchOutput | None]) -> None:
    """Fill ``results`` per job: its only row's output, or the likeliest of its candidates' outputs."""
    by_job: dict[int, list[int]] = {}
    for b, r in enumerate(rows):
        by_job.setdefault(r.job, []).append(b)
    multi = [b for bs in by_job.values() if len(bs) > 1 for b in bs]
    scores = dict(zip(multi, mean_logprobs(model, [rows[b].prompt for b in multi], [new_ids[b] for b in multi])))
    for j, bs in by_job.items():
        best = bs[0] if len(bs) == 1 else max(bs, key=lambda b: scores[b])
        if len(bs) > 1:
            log.debug("language scores %s -> %s", {rows[b].language: scores[b] for b in bs}, rows[best].language)
        results[j] = BatchOutput(rows[best].language, new_ids[best])


def _guard(model: AudioLanguageModel, jobs: Sequence[TaskJob], results: list[BatchOutput | None],
           options: GenerationOptions) -> None:
    """The repetition guard of :meth:`AudioLanguageModel.run`, job by job (an output that loops is decoded again,
    alone, with fallback settings; outputs that do not loop pass unchanged)."""
    for j, out in enumerate(results):
        if out is None or out.error is not None or not out.ids:
            continue
        try:
            results[j] = BatchOutput(out.language, model.guard_output(jobs[j], out.language, out.ids, options))
        except Exception as e:  # noqa: BLE001 - one job's failure is its own result
            results[j] = BatchOutput(out.language, [], e)


def _run_one(model: AudioLanguageModel, job: TaskJob, options: GenerationOptions) -> BatchOutput:
    try:
        return BatchOutput(*model.run(job, options))
    except Exception as e:  # noqa: BLE001 - one job's failure is its own result
        return BatchOutput(job.language, [], e)
