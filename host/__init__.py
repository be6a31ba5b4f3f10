"""Host-side code: the ReCoN routing compiler, the stream encoder/decoder, the cycle and performance models."""
