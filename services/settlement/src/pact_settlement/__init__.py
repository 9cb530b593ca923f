"""pact_settlement: the Pact suite's settlement service (system of record, state machine, rails)."""

__version__ = "0.1.0"
