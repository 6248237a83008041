"""Batched generation (alm.batching) gives what one-at-a-time generation gives, job by job, in request order.

The shipped model decodes speech made here by held-out voices (so outputs stop on their own, as in serving);
prompts differ in length so that left padding, per-row budgets and the per-row constraints all matter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alm
from alm.api import GenerationOptions, TaskJob
from alm.batching import BatchOutput, RowBudgetCriteria, left_pad, mean_logprobs, run_batch
from alm.prompts import asr_prompt

# the shortest prompt's sentence: "Hello." was read as nothing (a lone space) by the copy-then-spell model, whose BPE
# splits it into rare pieces; batching must agree on real, non-empty transcripts
SENTENCES = [("en", "Good morning."), ("en", "The garden needs water every morning."),
             ("es", "La tienda cierra a las ocho."), ("en", "Please close the window.")]


@pytest.fixture(scope="module")
def model() -> alm.AudioLanguageModel:
    torch.manual_seed(0)
    return alm.load(watermark=False)


@pytest.fixture(scope="module")
def speech(held_out_speech) -> list[np.ndarray]:  # noqa: ANN001 - conftest's speaker
    return held_out_speech(SENTENCES)


def _one_at_a_time(model: alm.AudioLanguageModel, jobs: list[TaskJob], options: GenerationOptions | None = None
                   ) -> list[tuple[str | None, list[int]]]:
    return [model.run(job, options) for job in jobs]


def _batched(model: alm.AudioLanguageModel, jobs: list[TaskJob], options: GenerationOptions | None = None
             ) -> list[tuple[str | None, list[int]]]:
    return [out.unwrap() for out in run_batch(model, jobs, options)]


def test_left_pad_and_row_budgets() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    stop = RowBudgetCriteria([1, 3], prompt_len=3)
    assert stop(torch.zeros(2, 4, dtype=torch.long), None).tolist() == [True, False]
    assert stop(torch.zeros(2, 6, dtype=torch.long), None).tolist() == [True, True]
    with pytest.raises(ValueError, match="empty"):
        left_pad([[1], []], pad_id=0)


@pytest.mark.parametrize("language", ["en", None])  # None: two candidate prompts per job (language detection)
def test_batched_asr_equals_one_at_a_time(model: alm.AudioLanguageModel, speech: list[np.ndarray],
                                          language: str | None) -> None:
    jobs = [model.prepare("asr", wav, language=language) for wav in speech]
    jobs.insert(1, model.prepare("asr", np.zeros(8000, np.float32), language=language))  # silent: nothing to run
    assert len({len(p) for job in jobs for p in job.candidates.values()}) >= 4  # lengths differ
    assert _batched(model, jobs) == _one_at_a_time(model, jobs)
    texts = [model.finish(job, *out.unwrap()).text for job, out in zip(jobs, run_batch(model, jobs))]
    assert texts[1] == "" and all(texts[i] for i in (0, 2, 3, 4))


def test_batched_slu_and_tts_equal_one_at_a_time(model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> None:
    slu = [model.prepare("slu", wav, language="en") for wav in speech[:3]]
    assert _batched(model, slu) == _one_at_a_time(model, slu)
    tts = [model.prepare("tts", text, language=lang) for lang, text in SENTENCES[:3]]
    short = GenerationOptions(max_new_tokens=31)  # keeps the test quick; per-row budgets: see continuation
    batched = _batched(model, tts, short)
    assert batched == _one_at_a_time(model, tts, short)
    assert all(ids[-1] == model.vocab.eos_id for _, ids in batched)  # closed properly within the budget


def test_batched_continuation_keeps_per_row_budgets(model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> None:
    jobs = [model.prepare("continue", wav, seconds=s) for wav, s in zip(speech[:3], (0.2, 0.6, 0.4))]
    batched = _batched(model, jobs)
    assert batched == _one_at_a_time(model, jobs)
    k = model.num_codebooks
    for job, (_, ids) in zip(jobs, batched):
        assert len(ids) <= job.max_new_tokens and (len(ids) - 2) // k >= job.min_frames


def test_a_failing_job_fails_alone(model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> None:
    good = [model.prepare("asr", wav, language="en") for wav in speech[:2]]
    too_long = TaskJob("asr", {"en": asr_prompt(model.vocab, "en", [7] * 4000)}, "en")
    outs = run_batch(model, [good[0], too_long, good[1]])
    assert isinstance(outs[1], BatchOutput) and isinstance(outs[1].error, ValueError)
    assert "too long" in str(outs[1].error)
    assert [outs[0].unwrap(), outs[2].unwrap()] == _one_at_a_time(model, good)
    with pytest.raises(ValueError, match="one task"):
        run_batch(model, [good[0], model.prepare("tts", "hi")])


def test_non_greedy_falls_back_to_one_at_a_time(model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> None:
    jobs = [model.prepare("asr", wav, language="en") for wav in speech[:2]]
    opts = GenerationOptions(strategy="sample", seed=3, max_new_tokens=8)
    assert _batched(model, jobs, opts) == _one_at_a_time(model, jobs, opts)


def test_mean_logprobs_match_unpadded_scores(model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> None:
    jobs = [model.prepare("asr", wav, language="en") for wav in speech[:3]]
    prompts = [job.candidates["en"] for job in jobs]
    outputs = [model.run(job)[1] for job in jobs]
    batched = mean_logprobs(model, prompts, outputs + [])
    alone = [model._mean_logprob(p, o) for p, o in zip(prompts, outputs)]
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-4)
    assert mean_logprobs(model, [prompts[0]], [[]]) == [-np.inf]
