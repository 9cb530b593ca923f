"""The gateway tests use the shared rail fixtures of ``tests/rails/conftest.py``."""

from ..conftest import STRIPE_KEY, CardFactory, Chain, SavedCard, localstripe_requests

__all__ = ["STRIPE_KEY", "CardFactory", "Chain", "SavedCard", "localstripe_requests"]
