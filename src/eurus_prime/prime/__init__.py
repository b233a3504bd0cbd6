"""The PRIME algorithm as plain functions over tables: ``rollouts`` (draw, sample, verify,
filter), ``prm`` (implicit process rewards, PRM update), ``policy`` (advantages, PPO update),
``prm_eval`` (the PRM on its own); ``config`` (PrimeConfig) and ``batch`` (tables to tensors).
No Kedro, run control or rank launcher here (``tests/architecture``)."""
