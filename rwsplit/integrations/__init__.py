"""Framework integrations: Flask-SQLAlchemy, SQLModel, FastAPI and scoped sessions; metrics and
traces: Prometheus and OpenTelemetry.

Each framework module imports its framework itself, so rwsplit never needs one installed:
import ``rwsplit.integrations.flask`` (or ``.sqlmodel``, ``.fastapi``, ``.prometheus``, ``.otel``)
only where it is used.
"""
