"""Process wiring every service stands on: settings, the runtime that builds the adapters they
name, the metrics catalogue and structured logging. Below the HTTP routes, the consumers and the
commands; above the stores, the event log and validation."""

__version__ = "0.1.0"
