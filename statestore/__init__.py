"""The state store port: receipts, event history, last-known state and consumer offsets.

One SQLAlchemy Core code path serves SQLite (embedded) and PostgreSQL (production).
"""
