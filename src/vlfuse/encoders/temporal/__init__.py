"""Temporal modules: per-frame features of a clip (tokens (B, T, N, D), pooled (B, T, D)) → one EncoderOutput.

One module per file, registered in `vlfuse.registry.TEMPORAL_MODULES` under its file stem; `order_aware` on each
class says whether reversing the frames can change its output (tests/encoders/test_temporal.py checks it).
"""
