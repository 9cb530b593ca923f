"""The escrow gateway's errors, with their failure codes."""

from __future__ import annotations

from typing import Final

from pact_schema.codes import FailureCode

from pact_settlement.rails.evm.results import DecodedRevert, EscrowState

__all__ = [
    "BAD_REQUEST_ERRORS",
    "CONFIG_ERRORS",
    "TOKEN_FUNDS_ERRORS",
    "EscrowBadRequestError",
    "EscrowConfigurationError",
    "EscrowConflictError",
    "EscrowGatewayError",
    "EscrowInsufficientFundsError",
    "EscrowNotFoundError",
    "EscrowRevertError",
    "EscrowTransferFailedError",
    "EscrowTransientError",
    "EscrowTxFailedError",
    "EscrowTxTimeoutError",
]

# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


class EscrowGatewayError(Exception):
    """Base of every error the gateway raises.

    ``retryable``: the same action may succeed later. ``outcome_unknown``: a transaction may
    have been broadcast (``tx_hash``); reconcile from the chain before doing anything else.
    """

    failure_code: FailureCode = FailureCode.SETTLEMENT_FAILED
    retryable: bool = False
    outcome_unknown: bool = False

    def __init__(self, message: str, *, tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


class EscrowRevertError(EscrowGatewayError):
    """The contract reverted with a known custom error."""

    def __init__(self, message: str, *, revert: DecodedRevert, tx_hash: str | None = None) -> None:
        super().__init__(message, tx_hash=tx_hash)
        self.revert = revert


class EscrowConfigurationError(EscrowRevertError):
    """The operator key is not allowed to do this (NotOperator/NotAuthorized/NotOwner)."""


class EscrowBadRequestError(EscrowRevertError):
    """Bad arguments: zero amount or address, deadline not in the future, ..."""

    failure_code = FailureCode.FAILED_ESCROW


class EscrowTransferFailedError(EscrowRevertError):
    """A recipient rejected the payment (``TransferFailed``); the action was rolled back."""


class EscrowConflictError(EscrowGatewayError):
    """The escrow exists but is not ours / was finished by another action."""

    failure_code = FailureCode.FAILED_ESCROW

    def __init__(self, message: str, *, state: EscrowState, tx_hash: str | None = None) -> None:
        super().__init__(message, tx_hash=tx_hash)
        self.state = state


class EscrowNotFoundError(EscrowGatewayError):
    """No escrow was ever locked under this id."""

    failure_code = FailureCode.FAILED_ESCROW


class EscrowInsufficientFundsError(EscrowGatewayError):
    """The operator account cannot pay value + gas."""

    failure_code = FailureCode.INSUFFICIENT_ESCROW


class EscrowTxFailedError(EscrowGatewayError):
    """Mined with ``status == 0`` and no decodable custom error (e.g. out of gas)."""


class EscrowTransientError(EscrowGatewayError):
    """The node could not be reached or answered with a transient error: retry later."""

    retryable = True

    def __init__(self, message: str, *, outcome_unknown: bool, tx_hash: str | None = None) -> None:
        super().__init__(message, tx_hash=tx_hash)
        self.outcome_unknown = outcome_unknown


class EscrowTxTimeoutError(EscrowTransientError):
    """The transaction was broadcast but no (confirmed) receipt came in time."""

    def __init__(self, message: str, *, tx_hash: str) -> None:
        super().__init__(message, outcome_unknown=True, tx_hash=tx_hash)


CONFIG_ERRORS: Final = frozenset(
    {
        "NotOperator",
        "NotAuthorized",
        "NotOwner",
        "Reentrancy",
        "AccessControlUnauthorizedAccount",
        "ReentrancyGuardReentrantCall",
        "UnsupportedToken",
    }
)
BAD_REQUEST_ERRORS: Final = frozenset(
    {
        "ZeroAmount",
        "ZeroAddress",
        "InvalidDeadline",
        "DeadlineNotPassed",
        "NothingToWithdraw",
        "AmountExceedsEscrow",
        "InsufficientCredit",
        "ERC2612ExpiredSignature",
        "ERC2612InvalidSigner",
    }
)
#: The payer (the operator's custody balance, or a buyer's) holds or allows too few tokens.
TOKEN_FUNDS_ERRORS: Final = frozenset({"ERC20InsufficientBalance", "ERC20InsufficientAllowance"})
