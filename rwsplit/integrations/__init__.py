"""Framework integrations: Flask-SQLAlchemy, SQLModel, FastAPI and scoped sessions.

Each framework module imports its framework itself, so rwsplit never needs one installed:
import ``rwsplit.integrations.flask`` (or ``.sqlmodel``, ``.fastapi``) only where it is used.
"""
