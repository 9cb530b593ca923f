"""pact_provider: the stateless Pact provider service (FastAPI)."""

__version__ = "0.1.0"
