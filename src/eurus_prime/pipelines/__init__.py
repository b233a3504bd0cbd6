"""Kedro pipelines: thin nodes (``nodes.py``) wired in ``pipeline.py``, one package per stage."""
