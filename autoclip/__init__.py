"""autoclip: turn long stream VODs into highlight reels, and learn from review."""

__version__ = "0.1.0"
