"""Process-level wiring of register-intake: settings, metrics catalogue, command line."""

__version__ = "0.1.0"
