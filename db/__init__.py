"""Persistence: SQLAlchemy models, engine/session handling and the service layer (``db.services``).

Pages and the CLI call services; only services touch SQL.
"""
