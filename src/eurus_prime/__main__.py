"""``python -m eurus_prime``: the ``eurus-prime`` commands. ``torchrun --nproc-per-node N -m
eurus_prime train ...`` starts an SPMD campaign this way (``engines/spmd.py``)."""

from pathlib import Path

from kedro.framework.project import configure_project


def main() -> None:
    configure_project(Path(__file__).parent.name)
    from eurus_prime.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
