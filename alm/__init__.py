"""alm: one decoder-only audio-language model over a vocabulary shared by text, codec tokens and units."""

__version__ = "0.1.0"
