"""Guards of a running stage: the Kedro hooks, the stage watchdog, the progress monitor the nodes
pass to library code as a callback, and fault injection for the resume tests."""
