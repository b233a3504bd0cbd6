"""The test suite; its folders mirror ``src/eurus_prime/``."""

from pathlib import Path

#: The repository root.
ROOT = Path(__file__).resolve().parents[1]
#: Committed test inputs (``tests/fixtures``).
FIXTURES = ROOT / "tests" / "fixtures"
