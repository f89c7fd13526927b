"""Server-side X (Twitter) conversion tracking for Django."""

__version__ = "0.1.0"
