"""The on-chain escrow rail (``PactEscrow`` through web3), one module per job:

* :mod:`.settings` — ``PACT_SETTLEMENT_EVM_*`` (``settings.evm``);
* :mod:`.rail` — :class:`~.rail.EvmEscrowRail` and its binding model;
* :mod:`.gateway` — the thin adapter over web3, with its :mod:`.ids`, :mod:`.results`,
  :mod:`.errors`, :mod:`.revert` (custom error decoding) and :mod:`.sender` (nonces, fees,
  receipts); :mod:`.nonces` is the database-backed nonce guard; :mod:`.deploy` deploys the
  contract (CLI, tests).

Nothing is imported here: importing the settings must not load web3 (about two seconds).
"""
