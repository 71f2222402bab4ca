"""vlfuse: vision-language fusion toolkit."""

__version__ = "0.1.0"
from vlfuse import components  # noqa: F401,E402
