"""Fulfilment: what the provider delivers after settlement locked the buyer's funds."""
