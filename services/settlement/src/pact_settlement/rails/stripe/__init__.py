"""The Stripe rail (like Polar's ``integrations/stripe/``), one module per job:

* :mod:`.settings` — ``PACT_SETTLEMENT_STRIPE_*`` (``settings.stripe``);
* :mod:`.rail` — :class:`~.rail.StripeRail` (one manual-capture PaymentIntent per settlement)
  and its binding model;
* :mod:`.topups` — card top-ups of a ledger balance;
* :mod:`.gateway` — the thin adapter over the ``stripe`` SDK, with its :mod:`.ids`,
  :mod:`.results` and :mod:`.errors`.

Nothing is imported here: importing the settings must not load the SDK.
"""
