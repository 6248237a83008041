"""Evaluation: metrics (WER/CER, BLEU, intent accuracy, slot F1), a speaker-similarity scorer, the pocketsphinx
peer, and ``alm eval`` (:mod:`training.evaluation.eval_alm`), which measures every task of a checkpoint on a corpus
split and writes JSON, a Markdown table and plots."""
