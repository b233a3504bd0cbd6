"""Run control: the training loop (``loop``), iteration folders (``layout``), stage manifests,
campaign progress, retention, the data lock, the one Kedro-session helper (``session``) and the
guards of a running stage (``guard/``: hooks, watchdog, progress monitor, fault injection)."""
