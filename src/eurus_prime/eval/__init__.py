"""Evaluation of checkpoints, inference (chat, best-of-N), checkpoint lookup and model conversion."""
