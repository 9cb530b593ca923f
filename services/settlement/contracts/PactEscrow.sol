// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

/// @title PactEscrow
/// @notice Native-currency escrow for the Pact settlement service.
///
/// Escrows are keyed by `escrowId = keccak256(abi.encode(intentId, buyer, seller))`
/// (see `escrowIdOf`), so an intent id cannot be squatted: a stranger locking the
/// same intent id for a different buyer/seller pair gets a different escrow id and
/// cannot touch the original escrow.
///
/// Roles
/// - `owner` (the deployer): adds/removes settlement operators, can hand over ownership.
///   The owner has no power over escrowed funds unless it is also an operator.
/// - operators: the settlement service's signing keys. They may lock on behalf of a
///   buyer (`lockFor`), post a bond on behalf of a seller, and release, refund or slash.
/// - buyer: locks funds (`lock`) and may release them to the seller.
/// - seller: may post a bond (`postBond`).
/// - anyone: may refund an escrow once its delivery deadline has passed.
///
/// Money flows (every action is only valid from state `Locked`, and is terminal)
/// - release: seller receives `amount + bond`.
/// - refund:  buyer receives `amount`; seller receives `bond` back.
/// - slash:   buyer receives `amount`; the beneficiary fixed at lock time receives `bond`.
/// - releasePartial(sellerAmount) (operator only): seller receives `sellerAmount + bond`, buyer
///   receives `amount - sellerAmount`, in one call (streaming settlements that delivered part).
///
/// Payments are pushed with `call` and revert the whole action with `TransferFailed`
/// if the recipient rejects them. The single exception is the seller's bond return in
/// `refund`: a seller cannot be allowed to block the buyer's refund by rejecting its own
/// bond (or burning gas), so the bond return gets at most `DEFERRABLE_PAYMENT_GAS` gas and,
/// if it fails, is credited to `pendingWithdrawals[seller]` instead (claimable with
/// `withdraw`, event `PaymentDeferred`). The seller's share of a partial release is paid the
/// same way, so a seller cannot block the buyer's part either. Deferred credit is paid out by
/// `withdraw` (the payee), `withdrawFor(payee)` (anyone, always to the payee itself, all of
/// it) or `payOut(payoutId, payee, amount)` (an operator: exactly `amount` of it, once per
/// `payoutId`, recorded in `payouts` so the settlement service can ask the chain whether a
/// payout it may have sent was paid; a second `payOut` with the same id reverts
/// `PayoutExists` and pays nothing).
/// Return data of payment calls is never copied.
///
/// Settlement state changes follow checks-effects-interactions and every
/// state-changing entry point is guarded against reentrancy.
contract PactEscrow {
    // ---------------------------------------------------------------------
    // Types
    // ---------------------------------------------------------------------

    /// @notice Escrow lifecycle. `None` means the escrow id was never locked.
    enum State {
        None,
        Locked,
        Released,
        Refunded,
        Slashed,
        PartiallyReleased
    }

    struct Escrow {
        address buyer; // slot 0 (20 bytes)
        uint64 deliveryDeadline; // slot 0 (8 bytes), unix seconds
        State state; // slot 0 (1 byte)
        address seller; // slot 1
        address beneficiary; // slot 2, receives the bond on slash; fixed at lock time
        uint256 amount; // slot 3, buyer's locked payment (wei)
        uint256 bond; // slot 4, seller's bond (wei), may be 0
        bytes32 intentId; // slot 5
    }

    // ---------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------

    /// @notice Caller is not the owner.
    error NotOwner();
    /// @notice Caller is not an authorised settlement operator.
    error NotOperator();
    /// @notice Caller is not allowed to perform this action on this escrow.
    error NotAuthorized();
    /// @notice `msg.value` was zero.
    error ZeroAmount();
    /// @notice An address argument that must be set was `address(0)`.
    error ZeroAddress();
    /// @notice The escrow id is already in use (any state other than `None`).
    error AlreadyExists(bytes32 escrowId);
    /// @notice The escrow is not in state `Locked` (`current` is the actual state; 0 = never locked).
    error NotLocked(bytes32 escrowId, State current);
    /// @notice A non-operator tried to refund before the delivery deadline passed.
    error DeadlineNotPassed(uint64 deadline, uint256 timestamp);
    /// @notice The delivery deadline given to `lock`/`lockFor` is not in the future.
    error InvalidDeadline(uint64 deadline, uint256 timestamp);
    /// @notice Sending `amount` wei to `to` failed.
    error TransferFailed(address to, uint256 amount);
    /// @notice A guarded function was re-entered.
    error Reentrancy();
    /// @notice `withdraw`/`withdrawFor` was called with nothing pending for the payee.
    error NothingToWithdraw();
    /// @notice `releasePartial` was asked to pay the seller more than the escrowed amount.
    error AmountExceedsEscrow(uint256 requested, uint256 amount);
    /// @notice A payout with this id was already paid (see `payouts`); nothing was paid again.
    error PayoutExists(bytes32 payoutId);
    /// @notice `payOut` asked for more than the payee's deferred credit (`available`).
    error InsufficientCredit(uint256 requested, uint256 available);

    // ---------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event OperatorAdded(address indexed operator);
    event OperatorRemoved(address indexed operator);

    /// @notice Funds were locked. `amount` is the buyer's payment, `deadline` the delivery deadline.
    event Locked(
        bytes32 indexed escrowId,
        bytes32 indexed intentId,
        address indexed buyer,
        address seller,
        uint256 amount,
        uint64 deadline
    );
    /// @notice `from` added `amount` to the seller bond, which now totals `totalBond`.
    event BondPosted(bytes32 indexed escrowId, address indexed from, uint256 amount, uint256 totalBond);
    /// @notice The seller was paid `amount` plus its `bond` back. `by` is the caller.
    event Released(bytes32 indexed escrowId, address indexed seller, uint256 amount, uint256 bond, address by);
    /// @notice The buyer got `amount` back and the seller its `bond`. `by` is the caller.
    event Refunded(bytes32 indexed escrowId, address indexed buyer, uint256 amount, uint256 bond, address by);
    /// @notice The buyer got `amount` back and `beneficiary` received the seller's `bond`.
    event Slashed(
        bytes32 indexed escrowId,
        address indexed beneficiary,
        uint256 bond,
        address buyer,
        uint256 amount,
        address by
    );
    /// @notice The seller was paid `sellerAmount` plus its `bond`, the buyer `buyerAmount` (the rest).
    event PartiallyReleased(
        bytes32 indexed escrowId,
        address indexed seller,
        uint256 sellerAmount,
        uint256 bond,
        address buyer,
        uint256 buyerAmount,
        address by
    );
    /// @notice A push payment to `to` failed and was credited to `pendingWithdrawals[to]`.
    event PaymentDeferred(bytes32 indexed escrowId, address indexed to, uint256 amount);
    /// @notice `to` withdrew `amount` of previously deferred payments.
    event Withdrawn(address indexed to, uint256 amount);
    /// @notice Payout `payoutId` paid `amount` of `payee`'s deferred credit to `payee`.
    event PaidOut(bytes32 indexed payoutId, address indexed payee, uint256 amount);

    // ---------------------------------------------------------------------
    // Storage
    // ---------------------------------------------------------------------

    /// @notice Manages the operator set.
    address public owner;
    /// @notice Authorised settlement operators.
    mapping(address => bool) public isOperator;
    /// @notice Deferred payments (failed seller payments on refund and partial release),
    /// claimable via `withdraw` or paid to the payee by anyone via `withdrawFor`.
    mapping(address => uint256) public pendingWithdrawals;
    /// @notice What the seller was paid (without the bond) by `releasePartial`, per escrow.
    mapping(bytes32 => uint256) public sellerAmountOf;

    /// @notice A payout made by `payOut`: to whom and how much (all zero: never paid).
    struct PayoutRecord {
        address payee;
        uint256 amount;
    }

    /// @notice Payouts made by `payOut`, by the settlement service's payout id.
    mapping(bytes32 => PayoutRecord) public payouts;

    mapping(bytes32 => Escrow) private _escrows;

    uint256 private _guard = 1; // 1 = not entered, 2 = entered

    /// @notice Gas forwarded with a seller's bond return on `refund`. The call cannot block the
    /// refund: if it fails or runs out of this gas, the bond is credited to `pendingWithdrawals`.
    uint256 public constant DEFERRABLE_PAYMENT_GAS = 100_000;

    // ---------------------------------------------------------------------
    // Modifiers
    // ---------------------------------------------------------------------

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    modifier onlyOperator() {
        if (!isOperator[msg.sender]) revert NotOperator();
        _;
    }

    modifier nonReentrant() {
        if (_guard != 1) revert Reentrancy();
        _guard = 2;
        _;
        _guard = 1;
    }

    // ---------------------------------------------------------------------
    // Administration
    // ---------------------------------------------------------------------

    /// @notice The deployer becomes the owner. The owner is NOT an operator until it adds itself.
    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    /// @notice Hand ownership to `newOwner` (must be non-zero).
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Authorise `operator`. Idempotent: no event if it already is one.
    function addOperator(address operator) external onlyOwner {
        if (operator == address(0)) revert ZeroAddress();
        if (!isOperator[operator]) {
            isOperator[operator] = true;
            emit OperatorAdded(operator);
        }
    }

    /// @notice Revoke `operator`. Idempotent: no event if it is not one.
    function removeOperator(address operator) external onlyOwner {
        if (isOperator[operator]) {
            isOperator[operator] = false;
            emit OperatorRemoved(operator);
        }
    }

    // ---------------------------------------------------------------------
    // Escrow lifecycle
    // ---------------------------------------------------------------------

    /// @notice The escrow key for `(intentId, buyer, seller)`.
    function escrowIdOf(bytes32 intentId, address buyer, address seller) public pure returns (bytes32) {
        return keccak256(abi.encode(intentId, buyer, seller));
    }

    /// @notice Buyer locks `msg.value` for `seller` under `intentId`.
    /// @param beneficiary receives the seller bond if the escrow is slashed; fixed from now on.
    /// @param deliveryDeadline unix seconds; after it anyone may refund. Must be in the future.
    /// @return escrowId `escrowIdOf(intentId, msg.sender, seller)`.
    function lock(bytes32 intentId, address seller, address beneficiary, uint64 deliveryDeadline)
        external
        payable
        nonReentrant
        returns (bytes32 escrowId)
    {
        escrowId = _lock(intentId, msg.sender, seller, beneficiary, deliveryDeadline);
    }

    /// @notice Operator locks `msg.value` on behalf of `buyer` (the settlement service holds
    /// custody of the buyer's funds). The escrow belongs to `buyer` exactly as if the buyer had
    /// called `lock`: same escrow id, refunds go to `buyer`, and `buyer` may release.
    /// @return escrowId `escrowIdOf(intentId, buyer, seller)`.
    function lockFor(bytes32 intentId, address buyer, address seller, address beneficiary, uint64 deliveryDeadline)
        external
        payable
        onlyOperator
        nonReentrant
        returns (bytes32 escrowId)
    {
        escrowId = _lock(intentId, buyer, seller, beneficiary, deliveryDeadline);
    }

    /// @notice Seller (or an operator on its behalf) adds `msg.value` to the escrow's bond.
    /// The bond goes back to the seller on release and refund, and to the beneficiary on slash.
    function postBond(bytes32 escrowId) external payable nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        if (msg.sender != e.seller && !isOperator[msg.sender]) revert NotAuthorized();
        if (msg.value == 0) revert ZeroAmount();

        uint256 total = e.bond + msg.value;
        e.bond = total;
        emit BondPosted(escrowId, msg.sender, msg.value, total);
    }

    /// @notice Pay the seller. Callable by an operator or the escrow's buyer.
    /// Seller receives `amount + bond`.
    function release(bytes32 escrowId) external nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        if (msg.sender != e.buyer && !isOperator[msg.sender]) revert NotAuthorized();

        address seller = e.seller;
        uint256 amount = e.amount;
        uint256 bond = e.bond;
        e.state = State.Released;
        emit Released(escrowId, seller, amount, bond, msg.sender);

        _pay(seller, amount + bond);
    }

    /// @notice Return the funds to the buyer. Callable by an operator at any time, or by
    /// anyone once `block.timestamp > deliveryDeadline`.
    /// Buyer receives `amount`; the seller gets its `bond` back (credited to
    /// `pendingWithdrawals[seller]` if the seller rejects it, so it cannot block the refund).
    function refund(bytes32 escrowId) external nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        if (!isOperator[msg.sender] && block.timestamp <= e.deliveryDeadline) {
            revert DeadlineNotPassed(e.deliveryDeadline, block.timestamp);
        }

        address buyer = e.buyer;
        address seller = e.seller;
        uint256 amount = e.amount;
        uint256 bond = e.bond;
        e.state = State.Refunded;
        emit Refunded(escrowId, buyer, amount, bond, msg.sender);

        _pay(buyer, amount);
        if (bond != 0) _payOrDefer(escrowId, seller, bond);
    }

    /// @notice Penalise the seller. Operator only.
    /// Split: the buyer receives its `amount` back in full; the beneficiary fixed at lock
    /// time receives the whole seller `bond` (nothing if no bond was posted).
    function slash(bytes32 escrowId) external onlyOperator nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);

        address buyer = e.buyer;
        address beneficiary = e.beneficiary;
        uint256 amount = e.amount;
        uint256 bond = e.bond;
        e.state = State.Slashed;
        emit Slashed(escrowId, beneficiary, bond, buyer, amount, msg.sender);

        _pay(buyer, amount);
        if (bond != 0) _pay(beneficiary, bond);
    }

    /// @notice Settle part of the escrow. Operator only. The seller receives `sellerAmount`
    /// and its `bond` back (deferred to `pendingWithdrawals` if it rejects them, so it cannot
    /// block the buyer's part); the buyer receives `amount - sellerAmount`.
    function releasePartial(bytes32 escrowId, uint256 sellerAmount) external onlyOperator nonReentrant {
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.Locked) revert NotLocked(escrowId, e.state);
        uint256 amount = e.amount;
        if (sellerAmount > amount) revert AmountExceedsEscrow(sellerAmount, amount);

        address buyer = e.buyer;
        address seller = e.seller;
        uint256 bond = e.bond;
        uint256 buyerAmount = amount - sellerAmount;
        e.state = State.PartiallyReleased;
        sellerAmountOf[escrowId] = sellerAmount;
        emit PartiallyReleased(escrowId, seller, sellerAmount, bond, buyer, buyerAmount, msg.sender);

        if (buyerAmount != 0) _pay(buyer, buyerAmount);
        if (sellerAmount + bond != 0) _payOrDefer(escrowId, seller, sellerAmount + bond);
    }

    /// @notice Claim payments deferred to the caller (see `PaymentDeferred`).
    function withdraw() external nonReentrant {
        _withdraw(msg.sender);
    }

    /// @notice Pay `payee` its deferred payments. Anyone may call; the money only ever goes to
    /// `payee` itself (a seller's payout of deferred credit, sent by the settlement operator).
    function withdrawFor(address payee) external nonReentrant {
        _withdraw(payee);
    }

    /// @notice Operator only: pay `payee` exactly `amount` of its deferred credit, as payout
    /// `payoutId` (recorded in `payouts`, event `PaidOut`). Each id pays at most once: a
    /// second call reverts `PayoutExists`. More than the credit reverts `InsufficientCredit`;
    /// a payee that rejects the payment reverts the whole call (`TransferFailed`, credit kept).
    function payOut(bytes32 payoutId, address payee, uint256 amount) external onlyOperator nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (payee == address(0)) revert ZeroAddress();
        if (payouts[payoutId].payee != address(0)) revert PayoutExists(payoutId);
        uint256 available = pendingWithdrawals[payee];
        if (amount > available) revert InsufficientCredit(amount, available);
        pendingWithdrawals[payee] = available - amount;
        payouts[payoutId] = PayoutRecord(payee, amount);
        emit PaidOut(payoutId, payee, amount);
        _pay(payee, amount);
    }

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    /// @notice Full escrow record, for reconciliation. All zero / `State.None` if never locked.
    function getEscrow(bytes32 escrowId)
        external
        view
        returns (
            bytes32 intentId,
            address buyer,
            address seller,
            address beneficiary,
            uint256 amount,
            uint256 bond,
            uint64 deliveryDeadline,
            State state
        )
    {
        Escrow storage e = _escrows[escrowId];
        return (e.intentId, e.buyer, e.seller, e.beneficiary, e.amount, e.bond, e.deliveryDeadline, e.state);
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    function _lock(bytes32 intentId, address buyer, address seller, address beneficiary, uint64 deliveryDeadline)
        private
        returns (bytes32 escrowId)
    {
        if (msg.value == 0) revert ZeroAmount();
        if (buyer == address(0) || seller == address(0) || beneficiary == address(0)) revert ZeroAddress();
        if (deliveryDeadline <= block.timestamp) revert InvalidDeadline(deliveryDeadline, block.timestamp);

        escrowId = escrowIdOf(intentId, buyer, seller);
        Escrow storage e = _escrows[escrowId];
        if (e.state != State.None) revert AlreadyExists(escrowId);

        e.buyer = buyer;
        e.deliveryDeadline = deliveryDeadline;
        e.state = State.Locked;
        e.seller = seller;
        e.beneficiary = beneficiary;
        e.amount = msg.value;
        e.intentId = intentId;

        emit Locked(escrowId, intentId, buyer, seller, msg.value, deliveryDeadline);
    }

    function _withdraw(address payee) private {
        uint256 amount = pendingWithdrawals[payee];
        if (amount == 0) revert NothingToWithdraw();
        pendingWithdrawals[payee] = 0;
        emit Withdrawn(payee, amount);
        _pay(payee, amount);
    }

    /// @dev Push `amount` wei to `to` with all remaining gas; revert the action if it fails.
    /// Return data is never copied, so a recipient cannot make the payer pay for a return bomb.
    function _pay(address to, uint256 amount) private {
        bool ok;
        assembly ("memory-safe") {
            ok := call(gas(), to, amount, 0, 0, 0, 0)
        }
        if (!ok) revert TransferFailed(to, amount);
    }

    /// @dev Push `amount` wei to `to` with at most `DEFERRABLE_PAYMENT_GAS` gas; if that fails
    /// (rejection or out of gas), credit `pendingWithdrawals[to]` instead of reverting.
    function _payOrDefer(bytes32 escrowId, address to, uint256 amount) private {
        bool ok;
        assembly ("memory-safe") {
            ok := call(DEFERRABLE_PAYMENT_GAS, to, amount, 0, 0, 0, 0)
        }
        if (!ok) {
            pendingWithdrawals[to] += amount;
            emit PaymentDeferred(escrowId, to, amount);
        }
    }
}
