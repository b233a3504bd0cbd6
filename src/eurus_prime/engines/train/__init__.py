"""Trainer backends (``base``: the interface and registry; ``torch_trainer``, ``deepspeed_trainer``),
the plumbing every update stage shares (``updates``) and the launcher of an update on N ranks
(``ranks``)."""
