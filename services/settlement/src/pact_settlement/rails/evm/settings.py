"""The EVM escrow rail's settings (``PACT_SETTLEMENT_EVM_<FIELD>``), nested in
:class:`~pact_settlement.config.SettlementSettings` as ``settings.evm``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from pact_settlement.rails.assets import check_asset

__all__ = ["EvmSettings"]


class EvmSettings(BaseModel):
    """``PactEscrow`` driven through web3 by the operator's key."""

    model_config = ConfigDict(extra="ignore", validate_default=True, hide_input_in_errors=True)

    rpc_url: SecretStr | None = Field(
        default=None,
        description="JSON-RPC endpoint (http(s)://…); a secret (hosted nodes put an API key in "
        "it). Required when 'evm' or 'evm-erc20' is enabled.",
    )
    operator_key: SecretStr | None = Field(
        default=None,
        description="Hex private key of the operator account that signs escrow transactions.",
    )
    contract_address: str | None = Field(
        default=None, description="Address of the deployed PactEscrow contract."
    )
    chain_id: int | None = Field(
        default=None,
        gt=0,
        description="Expected chain id; the rail refuses to sign for another chain. Required in "
        "production.",
    )
    confirmations: int = Field(
        default=1, ge=1, le=100, description="Blocks a transaction needs before it counts."
    )
    receipt_timeout_s: float = Field(
        default=25.0,
        gt=0,
        description="Wait for a (confirmed) receipt before the step stays pending for the "
        "reconciler; keep it below RAIL_CALL_TIMEOUT_S.",
    )
    poll_interval_s: float = Field(
        default=0.5, gt=0, description="Receipt / confirmation polling interval."
    )
    wei_per_unit: int = Field(
        default=10**18,
        ge=1,
        description="Wei per unit of price (10**18: one price unit is one ether). Amounts that "
        "would need a fraction of a wei are refused.",
    )
    native_symbol: str = Field(
        default="ETH",
        min_length=1,
        max_length=16,
        description="The asset name the 'evm' rail reports for the chain's native currency.",
    )
    token_escrow_address: str | None = Field(
        default=None,
        description="Address of the deployed PactTokenEscrow (the ERC-20 escrow). Required when "
        "'evm-erc20' is enabled.",
    )
    token_address: str | None = Field(
        default=None,
        description="Address of the ERC-20 token the 'evm-erc20' rail escrows (e.g. USDC). "
        "Required when 'evm-erc20' is enabled; the operator account holds the custody balance.",
    )
    token_decimals: int = Field(
        default=6,
        ge=0,
        le=36,
        description="The token's decimals (USDC: 6): one price unit is 10**decimals base units; "
        "a price needing a fraction of a base unit is refused. Checked against the token's "
        "decimals() on first use.",
    )
    token_symbol: str = Field(
        default="USDC",
        min_length=1,
        max_length=16,
        description="The asset name the 'evm-erc20' rail reports (its settlements' currency).",
    )
    deadline_grace_s: int = Field(
        default=3_600,
        ge=0,
        description="Added to delivery deadline + challenge window for the on-chain deadline "
        "after which anyone may refund the buyer.",
    )

    @field_validator("native_symbol", "token_symbol")
    @classmethod
    def _asset(cls, value: str) -> str:
        return check_asset(value)

    @field_validator("operator_key")
    @classmethod
    def _operator_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        text = text[2:] if text.lower().startswith("0x") else text
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("EVM_OPERATOR_KEY must be a hex private key") from None
        if len(raw) != 32:
            raise ValueError("EVM_OPERATOR_KEY must be 32 bytes of hex")
        return SecretStr("0x" + text.lower())

    @field_validator("contract_address", "token_escrow_address", "token_address")
    @classmethod
    def _contract_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        from eth_utils.address import is_address, is_checksum_address, to_checksum_address

        text = value.strip()
        digits = text[2:] if text.lower().startswith("0x") else text
        mixed_case = digits != digits.lower() and digits != digits.upper()
        if not is_address(text) or (mixed_case and not is_checksum_address(text)):
            raise ValueError(
                f"EVM_{(info.field_name or '').upper()} {value!r} is not an address (or its "
                "EIP-55 checksum is wrong)"
            )
        return str(to_checksum_address(text))

    def missing(self) -> list[str]:
        """The settings the rail cannot work without, by their variable suffix."""
        return [
            name
            for name, value in (
                ("EVM_RPC_URL", self.rpc_url),
                ("EVM_OPERATOR_KEY", self.operator_key),
                ("EVM_CONTRACT_ADDRESS", self.contract_address),
            )
            if not value
        ]

    def missing_token(self) -> list[str]:
        """What the 'evm-erc20' rail cannot work without, by variable suffix."""
        return [
            name
            for name, value in (
                ("EVM_RPC_URL", self.rpc_url),
                ("EVM_OPERATOR_KEY", self.operator_key),
                ("EVM_TOKEN_ESCROW_ADDRESS", self.token_escrow_address),
                ("EVM_TOKEN_ADDRESS", self.token_address),
            )
            if not value
        ]
