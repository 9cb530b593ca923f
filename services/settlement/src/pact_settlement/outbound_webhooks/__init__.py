"""Outbound webhooks: events about our settlements, signed and delivered to integrators'
endpoints from a transactional outbox (README "Outbound webhooks").

The ``webhooks`` package is the other direction (rails calling us)."""
