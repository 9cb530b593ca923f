// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title PactTokenEscrow
/// @notice ERC-20 escrow for the Pact settlement service: `PactEscrow`'s guarantees for a
/// token given at lock (USDC and the like), built on OpenZeppelin's SafeERC20,
/// ReentrancyGuard and AccessControl.
///
/// Escrows are keyed exactly as in `PactEscrow`: `escrowId = keccak256(abi.encode(intentId,
/// buyer, seller))`; the token is part of the escrow's terms, fixed at lock.
///
/// Roles (AccessControl)
/// - `DEFAULT_ADMIN_ROLE` (the deployer): grants and revokes `OPERATOR_ROLE`
///   (`addOperator`/`removeOperator` are shorthands). No power over escrowed funds unless it is
///   also an operator.
/// - `OPERATOR_ROLE`: the settlement service's signing keys. Lock on behalf of a buyer
///   (`lockFor`, from the operator's own custody balance), relay a buyer's permit
///   (`lockWithPermit`), post a bond, release, partially release, refund, slash.
/// - buyer: locks its own tokens (`lock` after `approve`, or `lockWithPermit` with an EIP-2612
///   signature instead of the approve) and may release them to the seller.
/// - seller: may post a bond.
/// - anyone: may refund an escrow once its delivery deadline has passed, and pay a payee its
///   deferred credit (`withdrawFor`, always to the payee itself).
/// - `OPERATOR_ROLE` also pays payouts: `payOut(payoutId, token, payee, amount)` pays exactly
///   `amount` of the payee's deferred credit, once per `payoutId` (recorded in `payouts`; a
///   second call with the id reverts `PayoutExists`), so the settlement service can ask the
///   chain whether a payout it may have sent was paid.
///
/// Money flows (every action is only valid from state `Locked`, and is terminal)
/// - release: seller receives `amount + bond`.
/// - releasePartial(sellerAmount) (operator): seller `sellerAmount + bond`, buyer the rest.
/// - refund:  buyer receives `amount`; seller receives `bond` back.
/// - slash:   buyer receives `amount`; the beneficiary fixed at lock time receives `bond`.
///
/// A token transfer that fails reverts the action, except the seller's share of a refund (its
/// bond) or of a partial release: a seller cannot block the buyer's money (e.g. a token that
/// blacklists the seller), so that share is credited to `pendingWithdrawals[token][seller]`.
///
/// Tokens that deliver less than the amount asked for (fee-on-transfer, rebasing down) are
/// refused at lock and bond time: the escrow must hold exactly what it will pay out.
contract PactTokenEscrow is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    enum State {
        None,
        Locked,
        Released,
        Refunded,
        Slashed,
        PartiallyReleased
    }

    struct Escrow {
        address buyer; // slot 0
        uint64 deliveryDeadline; // slot 0
        State state; // slot 0
        address seller; // slot 1
        address beneficiary; // slot 2
        IERC20 token; // slot 3
        uint256 amount; // slot 4, in the token's own units
        uint256 bond; // slot 5, same token
        bytes32 intentId; // slot 6
    }

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    error NotOperator();
    error NotAuthorized();
    error ZeroAmount();
    error ZeroAddress();
    error AlreadyExists(bytes32 escrowId);
    error NotLocked(bytes32 escrowId, State current);
    error DeadlineNotPassed(uint64 deadline, uint256 timestamp);
    error InvalidDeadline(uint64 deadline, uint256 timestamp);
    error TransferFailed(address to, uint256 amount);
    error NothingToWithdraw();
    error AmountExceedsEscrow(uint256 requested, uint256 amount);
    /// @notice A payout with this id was already paid (see `payouts`); nothing was paid again.
    error PayoutExists(bytes32 payoutId);
    /// @notice `payOut` asked for more than the payee's deferred credit (`available`).
    error InsufficientCredit(uint256 requested, uint256 available);
    /// @notice The token delivered `received` instead of `expected` (fee-on-transfer and the like).
    error UnsupportedToken(address token, uint256 expected, uint256 received);

    event OperatorAdded(address indexed operator);
    event OperatorRemoved(address indexed operator);
    event Locked(
        bytes32 indexed escrowId,
        bytes32 indexed intentId,
        address indexed buyer,
        address seller,
        address token,
        uint256 amount,
        uint64 deadline
    );
    event BondPosted(bytes32 indexed escrowId, address indexed from, uint256 amount, uint256 totalBond);
    event Released(bytes32 indexed escrowId, address indexed seller, uint256 amount, uint256 bond, address by);
    event PartiallyReleased(
        bytes32 indexed escrowId,
        address indexed seller,
        uint256 sellerAmount,
        uint256 bond,
        address buyer,
        uint256 buyerAmount,
        address by
    );
    event Refunded(bytes32 indexed escrowId, address indexed buyer, uint256 amount, uint256 bond, address by);
    event Slashed(
        bytes32 indexed escrowId,
        address indexed beneficiary,
        uint256 bond,
        address buyer,
        uint256 amount,
        address by
    );
    event PaymentDeferred(bytes32 indexed escrowId, address indexed to, address token, uint256 amount);
    event Withdrawn(address indexed to, address indexed token, uint256 amount);
    /// @notice Payout `payoutId` paid `amount` of `token` from `payee`'s deferred credit.
    event PaidOut(bytes32 indexed payoutId, address indexed payee, address token, uint256 amount);

    /// @notice A payout made by `payOut` (all zero: never paid).
    struct PayoutRecord {
        address payee;
        address token;
        uint256 amount;
    }

    /// @notice Deferred payments per token and payee.
    mapping(address token => mapping(address payee => uint256)) public pendingWithdrawals;
    /// @notice What the seller was paid (without the bond) by `releasePartial`, per escrow.
    mapping(bytes32 => uint256) public sellerAmountOf;
    /// @notice Payouts made by `payOut`, by the settlement service's payout id.
    mapping(bytes32 => PayoutRecord) public payouts;

    mapping(bytes32 => Escrow) private _escrows;

    modifier onlyOperator() {
        if (!hasRole(OPERATOR_ROLE, msg.sender)) revert NotOperator();
        _;
    }

    constructor() {
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
    }

    // ---------------------------------------------------------------------
    // Administration (PactEscrow's interface over AccessControl)
    // ---------------------------------------------------------------------

    function isOperator(address account) external view returns (bool) {
        return hasRole(OPERATOR_ROLE, account);
    }

    function addOperator(address operator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (operator == address(0)) revert ZeroAddress();
        if (_grantRole(OPERATOR_ROLE, operator)) emit OperatorAdded(operator);
    }

    function removeOperator(address operator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (_revokeRole(OPERATOR_ROLE, operator)) emit OperatorRemoved(operator);
    }

    // ---------------------------------------------------------------------
    // Escrow lifecycle
    // ---------------------------------------------------------------------

    function escrowIdOf(bytes32 intentId, address buyer, address seller) public pure returns (bytes32) {
        return keccak256(abi.encode(intentId, buyer, seller));
    }

    /// @notice Buyer locks `amount` of `token` (approved to this contract) for `seller`.
    function lock(
        bytes32 intentId,
        IERC20 token,
        address seller,
        address beneficiary,
        uint64 deliveryDeadline,
        uint256 amount
    ) external nonReentrant returns (bytes32 escrowId) {
        escrowId = _lock(intentId, token, msg.sender, msg.sender, seller, beneficiary, deliveryDeadline, amount);
    }

    /// @notice Operator locks `amount` of `token` from its own balance on behalf of `buyer`
    /// (operator custody); the escrow belongs to `buyer` as if the buyer had locked it.
    function lockFor(
        bytes32 intentId,
        IERC20 token,
        address buyer,
        address seller,
        address beneficiary,
        uint64 deliveryDeadline,
        uint256 amount
    ) external onlyOperator nonReentrant returns (bytes32 escrowId) {
        escrowId = _lock(intentId, token, msg.sender, buyer, seller, beneficiary, deliveryDeadline, amount);
    }

    /// @notice Lock `amount` of `token` from `buyer`'s own balance, authorised by the buyer's
    /// EIP-2612 permit (spender: this contract) instead of a separate approve. Callable by the
    /// buyer or an operator: the permit does not name the seller, so a stranger who saw it must
    /// not choose the escrow's terms. A permit already used by someone else (front-run) is
    /// ignored when the allowance it granted is still there.
    function lockWithPermit(
        bytes32 intentId,
        IERC20 token,
        address buyer,
        address seller,
        address beneficiary,
        uint64 deliveryDeadline,
        uint256 amount,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (bytes32 escrowId) {
        if (msg.sender != buyer && !hasRole(OPERATOR_ROLE, msg.sender)) revert NotAuthorized();
        try IERC20Permit(address(token)).permit(buyer, address(this), amount, permitDeadline, v, r, s) {} catch {}
        escrowId = _lock(intentId, token, buyer, buyer, seller, beneficiary, deliveryDeadline, amount);
    }

    /// @notice Seller (or an operator) adds `amount` of the escrow's token to the bond.
    function postBond(bytes32 escrowId, uint256 amount) external nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        if (msg.sender != e.seller && !hasRole(OPERATOR_ROLE, msg.sender)) revert NotAuthorized();
        if (amount == 0) revert ZeroAmount();
        _pull(e.token, msg.sender, amount);
        uint256 total = e.bond + amount;
        e.bond = total;
        emit BondPosted(escrowId, msg.sender, amount, total);
    }

    /// @notice Pay the seller `amount + bond`. Operator or the escrow's buyer.
    function release(bytes32 escrowId) external nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        if (msg.sender != e.buyer && !hasRole(OPERATOR_ROLE, msg.sender)) revert NotAuthorized();
        e.state = State.Released;
        emit Released(escrowId, e.seller, e.amount, e.bond, msg.sender);
        _push(e.token, e.seller, e.amount + e.bond);
    }

    /// @notice Operator only: seller `sellerAmount + bond` (deferred if it cannot receive),
    /// buyer `amount - sellerAmount`.
    function releasePartial(bytes32 escrowId, uint256 sellerAmount) external onlyOperator nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        uint256 amount = e.amount;
        if (sellerAmount > amount) revert AmountExceedsEscrow(sellerAmount, amount);
        uint256 buyerAmount = amount - sellerAmount;
        e.state = State.PartiallyReleased;
        sellerAmountOf[escrowId] = sellerAmount;
        emit PartiallyReleased(escrowId, e.seller, sellerAmount, e.bond, e.buyer, buyerAmount, msg.sender);
        if (buyerAmount != 0) _push(e.token, e.buyer, buyerAmount);
        if (sellerAmount + e.bond != 0) _pushOrDefer(escrowId, e.token, e.seller, sellerAmount + e.bond);
    }

    /// @notice Buyer gets `amount` back, seller its `bond` (deferred if it cannot receive).
    /// Operator at any time, anyone after the delivery deadline.
    function refund(bytes32 escrowId) external nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        if (!hasRole(OPERATOR_ROLE, msg.sender) && block.timestamp <= e.deliveryDeadline) {
            revert DeadlineNotPassed(e.deliveryDeadline, block.timestamp);
        }
        e.state = State.Refunded;
        emit Refunded(escrowId, e.buyer, e.amount, e.bond, msg.sender);
        _push(e.token, e.buyer, e.amount);
        if (e.bond != 0) _pushOrDefer(escrowId, e.token, e.seller, e.bond);
    }

    /// @notice Operator only: buyer gets `amount` back, the beneficiary fixed at lock the `bond`.
    function slash(bytes32 escrowId) external onlyOperator nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        e.state = State.Slashed;
        emit Slashed(escrowId, e.beneficiary, e.bond, e.buyer, e.amount, msg.sender);
        _push(e.token, e.buyer, e.amount);
        if (e.bond != 0) _push(e.token, e.beneficiary, e.bond);
    }

    /// @notice Claim the caller's deferred payments in `token`.
    function withdraw(IERC20 token) external nonReentrant {
        _withdraw(token, msg.sender);
    }

    /// @notice Pay `payee` its deferred payments in `token`; anyone may call, the tokens only
    /// ever go to `payee`.
    function withdrawFor(IERC20 token, address payee) external nonReentrant {
        _withdraw(token, payee);
    }

    /// @notice Operator only: pay `payee` exactly `amount` of its deferred credit in `token`,
    /// as payout `payoutId` (recorded in `payouts`, event `PaidOut`), at most once per id
    /// (`PayoutExists`). More than the credit reverts `InsufficientCredit`; a transfer the
    /// token refuses reverts the whole call (`TransferFailed`, the credit is kept).
    function payOut(bytes32 payoutId, IERC20 token, address payee, uint256 amount)
        external
        onlyOperator
        nonReentrant
    {
        if (amount == 0) revert ZeroAmount();
        if (payee == address(0) || address(token) == address(0)) revert ZeroAddress();
        if (payouts[payoutId].payee != address(0)) revert PayoutExists(payoutId);
        uint256 available = pendingWithdrawals[address(token)][payee];
        if (amount > available) revert InsufficientCredit(amount, available);
        pendingWithdrawals[address(token)][payee] = available - amount;
        payouts[payoutId] = PayoutRecord(payee, address(token), amount);
        emit PaidOut(payoutId, payee, address(token), amount);
        _push(token, payee, amount);
    }

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    function getEscrow(bytes32 escrowId)
        external
        view
        returns (
            bytes32 intentId,
            address buyer,
            address seller,
            address beneficiary,
            address token,
            uint256 amount,
            uint256 bond,
            uint64 deliveryDeadline,
            State state
        )
    {
        Escrow storage e = _escrows[escrowId];
        return (
            e.intentId, e.buyer, e.seller, e.beneficiary, address(e.token), e.amount, e.bond, e.deliveryDeadline, e.state
        );
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    function _lock(
        bytes32 intentId,
        IERC20 token,
        address payer,
        address buyer,
        address seller,
        address beneficiary,
        uint64 deliveryDeadline,
        uint256 amount
    ) private returns (bytes32 escrowId) {
        if (amount == 0) revert ZeroAmount();
        if (address(token) == address(0) || buyer == address(0) || seller == address(0) || beneficiary == address(0)) {
            revert ZeroAddress();
        }
        if (deliveryDeadline <= block.timestamp) revert InvalidDeadline(deliveryDeadline, block.timestamp);
        escrowId = escrowIdOf(intentId, buyer, seller);
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.None) revert AlreadyExists(escrowId);

        e.buyer = buyer;
        e.deliveryDeadline = deliveryDeadline;
        e.state = State.Locked;
        e.seller = seller;
        e.beneficiary = beneficiary;
        e.token = token;
        e.amount = amount;
        e.intentId = intentId;
        emit Locked(escrowId, intentId, buyer, seller, address(token), amount, deliveryDeadline);

        _pull(token, payer, amount);
    }

    /// @dev Take exactly `amount` from `from`; refuse tokens that deliver less.
    function _pull(IERC20 token, address from, uint256 amount) private {
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(from, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) revert UnsupportedToken(address(token), amount, received);
    }

    function _push(IERC20 token, address to, uint256 amount) private {
        if (!token.trySafeTransfer(to, amount)) revert TransferFailed(to, amount);
    }

    function _pushOrDefer(bytes32 escrowId, IERC20 token, address to, uint256 amount) private {
        if (!token.trySafeTransfer(to, amount)) {
            pendingWithdrawals[address(token)][to] += amount;
            emit PaymentDeferred(escrowId, to, address(token), amount);
        }
    }

    function _withdraw(IERC20 token, address payee) private {
        uint256 amount = pendingWithdrawals[address(token)][payee];
        if (amount == 0) revert NothingToWithdraw();
        pendingWithdrawals[address(token)][payee] = 0;
        emit Withdrawn(payee, address(token), amount);
        _push(token, payee, amount);
    }
}
