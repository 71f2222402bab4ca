"""Compiled CPU kernels for layers whose PyTorch form spends its time in memory passes, not arithmetic."""
