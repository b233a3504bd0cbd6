"""PRIME's algorithm as pure torch functions: no Kedro, no I/O (PRIME_REFERENCE.md)."""
