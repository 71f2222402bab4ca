"""vlfuse: vision-language fusion toolkit."""

__version__ = "0.1.0"
