"""Every model, imported once so ``Base.metadata`` is complete (Alembic, tests)."""

from pact_settlement.accounts.models import PaymentProfile
from pact_settlement.db.base import Base
from pact_settlement.idempotency.models import IdempotencyKey
from pact_settlement.ledger.models import JournalLeg, JournalTransaction, LedgerAccount
from pact_settlement.outbound_webhooks.models import WebhookDelivery, WebhookEndpoint
from pact_settlement.payouts.models import Payout
from pact_settlement.rails.bindings import RailBinding
from pact_settlement.rails.models import RailOperation
from pact_settlement.settlements.models import Settlement, SettlementEvent
from pact_settlement.transcripts.models import Transcript
from pact_settlement.webhooks.models import WebhookEvent

__all__ = [
    "Base",
    "IdempotencyKey",
    "JournalLeg",
    "JournalTransaction",
    "LedgerAccount",
    "PaymentProfile",
    "Payout",
    "RailBinding",
    "RailOperation",
    "Settlement",
    "SettlementEvent",
    "Transcript",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
