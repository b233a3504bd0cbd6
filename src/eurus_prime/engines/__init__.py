"""Engines the algorithm runs on: ``rollout/`` (samplers behind one interface), ``train/`` (trainer
backends, the update plumbing, the rank launcher), ``sft`` and ``logprobs``. Nothing here knows
the algorithm (``tests/architecture``)."""
