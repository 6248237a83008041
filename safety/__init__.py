"""Safety: keyed watermarking of generated speech and a deepfake detector."""
