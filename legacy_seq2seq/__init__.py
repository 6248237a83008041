"""Classic encoder-decoder speech baselines (LAS, CTC, RNN-T, Tacotron 2, FastSpeech 2, HiFi-GAN, Translatotron).

Nothing in ``alm`` or ``codec`` imports this package (``tests/test_isolation.py`` checks it).
"""
