"""eurus_prime"""

__version__ = "0.1"
