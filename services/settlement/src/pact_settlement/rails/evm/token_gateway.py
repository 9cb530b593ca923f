"""The ERC-20 escrow (``PactTokenEscrow``): :class:`EscrowGateway` for a token given at lock.

Same lifecycle, escrow ids, convergence rules and errors as the native gateway (release,
refund, slash, partial release and status are inherited); what differs:

- amounts are in the token's own base unit (USDC: 10**-6), never wei, and no value is sent;
- the operator's custody lock (``lockFor``) and bonds (``postBond``) pull tokens from the
  operator account, so the gateway approves the escrow once (an unlimited allowance) when the
  current allowance would not cover the call;
- :meth:`TokenEscrowGateway.lock_with_permit` relays a buyer's EIP-2612 signature: the tokens
  come from the buyer's own balance, without a separate ``approve`` transaction;
- deferred credit is per token (``pendingWithdrawals(token, payee)``).
"""

from __future__ import annotations

from typing import Any, Final

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import AsyncWeb3

from pact_settlement.rails.evm.errors import EscrowTxFailedError
from pact_settlement.rails.evm.gateway import EscrowGateway, _check_deadline, positive_amount
from pact_settlement.rails.evm.ids import TOKEN_ESCROW, intent_bytes, to_bytes32, to_hex
from pact_settlement.rails.evm.results import EscrowState, EscrowStatus, EscrowTxResult
from pact_settlement.rails.evm.sender import OnSubmitted, RevertedError

__all__ = ["ERC20_ABI", "MAX_UINT256", "Permit", "TokenEscrowGateway"]

MAX_UINT256: Final = 2**256 - 1

#: The slice of ERC-20 + EIP-2612 the gateway calls.
ERC20_ABI: Final = [
    {
        "type": "function",
        "name": name,
        "stateMutability": mutability,
        "inputs": [{"type": t, "name": n} for t, n in inputs],
        "outputs": [{"type": t, "name": ""} for t in outputs],
    }
    for name, mutability, inputs, outputs in (
        ("balanceOf", "view", (("address", "account"),), ("uint256",)),
        ("allowance", "view", (("address", "owner"), ("address", "spender")), ("uint256",)),
        ("approve", "nonpayable", (("address", "spender"), ("uint256", "value")), ("bool",)),
        ("decimals", "view", (), ("uint8",)),
        ("symbol", "view", (), ("string",)),
        ("nonces", "view", (("address", "owner"),), ("uint256",)),
        ("name", "view", (), ("string",)),
        ("DOMAIN_SEPARATOR", "view", (), ("bytes32",)),
    )
]
#: EIP-2612's ``Permit`` struct type hash.
PERMIT_TYPEHASH: Final = keccak(
    text="Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
#: Half the secp256k1 group order: a larger ``s`` is malleable and refused (OpenZeppelin ECDSA).
_HALF_N: Final = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


class Permit:
    """A buyer's EIP-2612 signature letting the escrow pull ``value`` (the lock amount)."""

    __slots__ = ("deadline", "r", "s", "v")

    def __init__(self, *, deadline: int, v: int, r: bytes, s: bytes) -> None:
        self.deadline, self.v, self.r, self.s = deadline, v, r, s


class TokenEscrowGateway(EscrowGateway):
    """``PactTokenEscrow`` operations for one token, signed by the operator's key."""

    artifact_name = TOKEN_ESCROW

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        contract_address: str,
        operator_account: LocalAccount,
        token_address: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if token_address is None:
            raise ValueError("the ERC-20 escrow gateway needs the token's address")
        super().__init__(w3, contract_address, operator_account, *args, **kwargs)
        self.token_address = to_checksum_address(token_address)
        self.token = w3.eth.contract(address=self.token_address, abi=ERC20_ABI)

    # -- actions ---------------------------------------------------------------------------

    async def lock_for(
        self,
        intent_id: str | bytes,
        buyer: str,
        seller: str,
        beneficiary: str,
        deadline_s: int,
        amount_wei: int,
        *,
        on_submitted: OnSubmitted | None = None,
    ) -> EscrowTxResult:
        """Operator custody lock: ``amount_wei`` base units of the token from the operator's
        balance, escrowed for ``buyer`` -> ``seller``."""
        positive_amount(amount_wei)
        _check_deadline(deadline_s)
        intent_raw = intent_bytes(intent_id)
        buyer_c, seller_c = to_checksum_address(buyer), to_checksum_address(seller)
        beneficiary_c = to_checksum_address(beneficiary)
        await self.ensure_allowance(amount_wei)
        fn = self.contract.functions.lockFor(
            intent_raw, self.token_address, buyer_c, seller_c, beneficiary_c, deadline_s, amount_wei
        )
        return await self._send_lock(
            fn, intent_raw, buyer_c, seller_c, beneficiary_c, deadline_s, amount_wei,
            token=self.token_address, on_submitted=on_submitted,
        )  # fmt: skip

    async def lock_with_permit(
        self,
        intent_id: str | bytes,
        buyer: str,
        seller: str,
        beneficiary: str,
        deadline_s: int,
        amount: int,
        permit: Permit,
        *,
        on_submitted: OnSubmitted | None = None,
    ) -> EscrowTxResult:
        """Lock ``amount`` from the buyer's own balance, authorised by the buyer's permit
        (the operator relays it and pays the gas; no approve transaction by the buyer)."""
        positive_amount(amount, "amount")
        _check_deadline(deadline_s)
        intent_raw = intent_bytes(intent_id)
        buyer_c, seller_c = to_checksum_address(buyer), to_checksum_address(seller)
        beneficiary_c = to_checksum_address(beneficiary)
        fn = self.contract.functions.lockWithPermit(
            intent_raw, self.token_address, buyer_c, seller_c, beneficiary_c, deadline_s, amount,
            permit.deadline, permit.v, permit.r, permit.s,
        )  # fmt: skip
        return await self._send_lock(
            fn, intent_raw, buyer_c, seller_c, beneficiary_c, deadline_s, amount,
            token=self.token_address, on_submitted=on_submitted,
        )  # fmt: skip

    async def ensure_allowance(self, amount: int) -> None:
        """Approve the escrow for the operator's tokens once, when ``amount`` is not covered."""
        allowance = int(await self.token.functions.allowance(self.operator, self.address).call())
        if allowance >= amount:
            return
        try:
            await self._sender.send(self.token.functions.approve(self.address, MAX_UINT256))
        except RevertedError as exc:
            raise EscrowTxFailedError(
                f"approve of {self.address} on token {self.token_address} reverted: {exc}",
                tx_hash=exc.tx_hash,
            ) from exc

    # -- reads -----------------------------------------------------------------------------

    async def token_balance(self, address: str) -> int:
        return int(await self.token.functions.balanceOf(to_checksum_address(address)).call())

    async def permit_signer(self, owner: str, value: int, permit: Permit) -> ChecksumAddress | None:
        """Who signed ``permit`` as an EIP-2612 permit of ``owner`` letting this escrow pull
        ``value``, over the token's own ``DOMAIN_SEPARATOR()`` and ``owner``'s current nonce
        (what the token's ``permit`` checks); ``None``: not a valid signature at all."""
        owner_c = to_checksum_address(owner)
        r, s = int.from_bytes(permit.r, "big"), int.from_bytes(permit.s, "big")
        if permit.v not in (27, 28) or not r > 0 or not 0 < s <= _HALF_N:
            return None
        domain = bytes(await self.token.functions.DOMAIN_SEPARATOR().call())
        nonce = int(await self.token.functions.nonces(owner_c).call())
        struct = keccak(
            abi_encode(
                ["bytes32", "address", "address", "uint256", "uint256", "uint256"],
                [PERMIT_TYPEHASH, owner_c, self.address, value, nonce, permit.deadline],
            )
        )
        digest = keccak(b"\x19\x01" + domain + struct)
        try:
            signature = Signature(vrs=(permit.v - 27, r, s))
            public = signature.recover_public_key_from_msg_hash(digest)
        except (BadSignature, ValueError):
            return None
        return to_checksum_address(public.to_checksum_address())

    async def token_decimals(self) -> int:
        return int(await self.token.functions.decimals().call())

    async def pending_withdrawal(self, payee: str) -> int:
        return int(
            await self.contract.functions.pendingWithdrawals(
                self.token_address, to_checksum_address(payee)
            ).call()
        )

    # -- what differs from the native escrow -----------------------------------------------

    def _decode_escrow(self, raw: bytes, values: Any) -> EscrowState:
        intent, buyer, seller, beneficiary, token, amount, bond, deadline, status = values
        status = EscrowStatus(int(status))
        return EscrowState(
            escrow_id=to_hex(raw),
            intent_id=to_hex(bytes(intent)),
            buyer=to_checksum_address(buyer),
            seller=to_checksum_address(seller),
            beneficiary=to_checksum_address(beneficiary),
            amount_wei=int(amount),
            bond_wei=int(bond),
            delivery_deadline=int(deadline),
            status=status,
            token=None if status is EscrowStatus.NONE else to_checksum_address(token),
        )

    def _bond_call(self, raw: bytes, amount: int) -> tuple[Any, int]:
        return self.contract.functions.postBond(raw, amount), 0

    async def post_bond(
        self,
        escrow_id_hex: str | bytes,
        amount_wei: int,
        *,
        on_submitted: OnSubmitted | None = None,
    ) -> EscrowTxResult:
        positive_amount(amount_wei)
        to_bytes32(escrow_id_hex, "escrow id")
        await self.ensure_allowance(amount_wei)
        return await super().post_bond(escrow_id_hex, amount_wei, on_submitted=on_submitted)

    def _withdraw_call(self, payee: ChecksumAddress) -> Any:
        return self.contract.functions.withdrawFor(self.token_address, payee)

    def _pay_out_call(self, raw: bytes, payee: ChecksumAddress, amount: int) -> Any:
        return self.contract.functions.payOut(raw, self.token_address, payee, amount)

    def _decode_payout(self, values: Any) -> tuple[str, ChecksumAddress | None, int]:
        payee, token, amount = values
        return str(payee), to_checksum_address(token), int(amount)

    def _token_address(self) -> ChecksumAddress | None:
        return self.token_address
