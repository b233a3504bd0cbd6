"""Reports over a campaign's data: the rollout report (``inspection``), learning curves, the
pipeline diagram and the resource plan."""
