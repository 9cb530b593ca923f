// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {PactTokenEscrow} from "../../PactTokenEscrow.sol";
import {PactTestToken} from "../PactTestToken.sol";
import {Base, BlockingToken, FeeToken, ReentrantToken} from "./Hostile.sol";

contract PactTokenEscrowTest is Base {
    PactTokenEscrow internal escrow;
    PactTestToken internal usdc;
    address internal operator = address(0x0e0e);
    uint256 internal buyerKey = 0xB0B;
    address internal buyer;
    address internal seller = address(0x5e11);
    address internal stranger = address(0x5757);
    bytes32 internal constant INTENT = keccak256("intent-1");
    uint256 internal constant AMOUNT = 1_500_000; // 1.5 USDC
    uint256 internal constant BOND = 300_000;

    function setUp() public {
        buyer = vm.addr(buyerKey);
        escrow = new PactTokenEscrow();
        escrow.addOperator(operator);
        usdc = new PactTestToken("Pact Test Dollar", "USDT6");
        usdc.mint(operator, 100e6);
        usdc.mint(buyer, 100e6);
        usdc.mint(seller, 100e6);
        vm.prank(operator);
        usdc.approve(address(escrow), type(uint256).max);
        vm.prank(seller);
        usdc.approve(address(escrow), type(uint256).max);
        vm.warp(1_000_000);
    }

    function _lock() internal returns (bytes32 id) {
        vm.prank(operator);
        id = escrow.lockFor(INTENT, IERC20(address(usdc)), buyer, seller, buyer, uint64(block.timestamp + 100), AMOUNT);
    }

    function _lockBonded() internal returns (bytes32 id) {
        id = _lock();
        vm.prank(seller);
        escrow.postBond(id, BOND);
    }

    function test_lock_pulls_exactly_the_amount_from_the_operator() public {
        bytes32 id = _lock();
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "escrow holds the amount");
        assertEq(usdc.balanceOf(operator), 100e6 - AMOUNT, "operator paid");
        (,,,, address token, uint256 amount,,, PactTokenEscrow.State state) = escrow.getEscrow(id);
        require(token == address(usdc) && amount == AMOUNT, "terms");
        require(state == PactTokenEscrow.State.Locked, "locked");
    }

    function test_release_pays_seller_amount_and_bond() public {
        bytes32 id = _lockBonded();
        uint256 before = usdc.balanceOf(seller);
        vm.prank(operator);
        escrow.release(id);
        assertEq(usdc.balanceOf(seller), before + AMOUNT + BOND, "seller paid");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
    }

    function test_double_release_reverts() public {
        bytes32 id = _lock();
        vm.prank(operator);
        escrow.release(id);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(PactTokenEscrow.NotLocked.selector, id, PactTokenEscrow.State.Released)
        );
        escrow.release(id);
    }

    function test_stranger_cannot_release_or_slash() public {
        bytes32 id = _lock();
        vm.prank(stranger);
        vm.expectRevert(PactTokenEscrow.NotAuthorized.selector);
        escrow.release(id);
        vm.prank(stranger);
        vm.expectRevert(PactTokenEscrow.NotOperator.selector);
        escrow.slash(id);
    }

    function test_refund_before_deadline_by_non_operator_reverts_and_after_it_anyone_may() public {
        bytes32 id = _lockBonded();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(PactTokenEscrow.DeadlineNotPassed.selector, uint64(block.timestamp + 100), block.timestamp)
        );
        escrow.refund(id);
        vm.warp(block.timestamp + 101);
        uint256 buyerBefore = usdc.balanceOf(buyer);
        uint256 sellerBefore = usdc.balanceOf(seller);
        vm.prank(stranger);
        escrow.refund(id);
        assertEq(usdc.balanceOf(buyer), buyerBefore + AMOUNT, "buyer refunded");
        assertEq(usdc.balanceOf(seller), sellerBefore + BOND, "bond back");
    }

    function test_slash_pays_buyer_amount_and_beneficiary_bond() public {
        bytes32 id = _lockBonded();
        uint256 before = usdc.balanceOf(buyer);
        vm.prank(operator);
        escrow.slash(id);
        assertEq(usdc.balanceOf(buyer), before + AMOUNT + BOND, "buyer is also the beneficiary");
    }

    function test_partial_release_splits_in_one_call() public {
        bytes32 id = _lockBonded();
        uint256 buyerBefore = usdc.balanceOf(buyer);
        uint256 sellerBefore = usdc.balanceOf(seller);
        vm.prank(operator);
        escrow.releasePartial(id, 400_000);
        assertEq(usdc.balanceOf(seller), sellerBefore + 400_000 + BOND, "seller part + bond");
        assertEq(usdc.balanceOf(buyer), buyerBefore + AMOUNT - 400_000, "buyer the rest");
        assertEq(escrow.sellerAmountOf(id), 400_000, "recorded");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
    }

    function test_partial_release_above_the_amount_reverts() public {
        bytes32 id = _lock();
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactTokenEscrow.AmountExceedsEscrow.selector, AMOUNT + 1, AMOUNT));
        escrow.releasePartial(id, AMOUNT + 1);
    }

    function test_partial_release_is_operator_only_and_terminal() public {
        bytes32 id = _lock();
        vm.prank(buyer);
        vm.expectRevert(PactTokenEscrow.NotOperator.selector);
        escrow.releasePartial(id, 1);
        vm.prank(operator);
        escrow.releasePartial(id, 1);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(PactTokenEscrow.NotLocked.selector, id, PactTokenEscrow.State.PartiallyReleased)
        );
        escrow.release(id);
    }

    function _permit(uint256 value, uint256 deadline) internal returns (uint8 v, bytes32 r, bytes32 s) {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                buyer,
                address(escrow),
                value,
                usdc.nonces(buyer),
                deadline
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", usdc.DOMAIN_SEPARATOR(), structHash));
        (v, r, s) = vm.sign(buyerKey, digest);
    }

    function test_lock_with_permit_pulls_from_the_buyer_without_approve() public {
        (uint8 v, bytes32 r, bytes32 s) = _permit(AMOUNT, block.timestamp + 60);
        uint256 before = usdc.balanceOf(buyer);
        vm.prank(operator);
        bytes32 id = escrow.lockWithPermit(
            INTENT, IERC20(address(usdc)), buyer, seller, buyer, uint64(block.timestamp + 100), AMOUNT, block.timestamp + 60, v, r, s
        );
        assertEq(usdc.balanceOf(buyer), before - AMOUNT, "buyer paid");
        require(id == escrow.escrowIdOf(INTENT, buyer, seller), "buyer's escrow");
    }

    function test_stranger_cannot_relay_a_permit_to_choose_the_seller() public {
        (uint8 v, bytes32 r, bytes32 s) = _permit(AMOUNT, block.timestamp + 60);
        vm.prank(stranger);
        vm.expectRevert(PactTokenEscrow.NotAuthorized.selector);
        escrow.lockWithPermit(
            INTENT, IERC20(address(usdc)), buyer, stranger, stranger, uint64(block.timestamp + 100), AMOUNT, block.timestamp + 60, v, r, s
        );
    }

    function test_front_run_permit_still_locks() public {
        (uint8 v, bytes32 r, bytes32 s) = _permit(AMOUNT, block.timestamp + 60);
        usdc.permit(buyer, address(escrow), AMOUNT, block.timestamp + 60, v, r, s); // someone used it first
        vm.prank(buyer);
        escrow.lockWithPermit(
            INTENT, IERC20(address(usdc)), buyer, seller, buyer, uint64(block.timestamp + 100), AMOUNT, block.timestamp + 60, v, r, s
        );
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "locked");
    }

    function test_fee_on_transfer_token_is_refused() public {
        FeeToken fee = new FeeToken();
        fee.mint(operator, 1e6);
        vm.startPrank(operator);
        fee.approve(address(escrow), type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(PactTokenEscrow.UnsupportedToken.selector, address(fee), 1e6, 1e6 - 1e4));
        escrow.lockFor(INTENT, IERC20(address(fee)), buyer, seller, buyer, uint64(block.timestamp + 100), 1e6);
        vm.stopPrank();
    }

    function test_reentrant_token_cannot_reenter_release() public {
        ReentrantToken bad = new ReentrantToken();
        bad.mint(operator, 10e6);
        vm.startPrank(operator);
        bad.approve(address(escrow), type(uint256).max);
        bytes32 id = escrow.lockFor(INTENT, IERC20(address(bad)), buyer, seller, buyer, uint64(block.timestamp + 100), 1e6);
        bytes32 other = escrow.lockFor(keccak256("other"), IERC20(address(bad)), buyer, seller, buyer, uint64(block.timestamp + 100), 1e6);
        vm.stopPrank();
        bad.arm(address(escrow), abi.encodeCall(PactTokenEscrow.release, (other)));
        vm.prank(operator);
        escrow.release(id);
        require(bad.reentered(), "the token tried");
        require(
            bytes4(bad.reentryError()) == ReentrancyGuard.ReentrancyGuardReentrantCall.selector, "blocked by the guard"
        );
        (,,,,,,,, PactTokenEscrow.State state) = escrow.getEscrow(other);
        require(state == PactTokenEscrow.State.Locked, "other escrow untouched");
    }

    function test_blocked_seller_cannot_block_the_buyer_and_is_paid_by_withdraw_for() public {
        BlockingToken blk = new BlockingToken();
        blk.mint(operator, 10e6);
        vm.startPrank(operator);
        blk.approve(address(escrow), type(uint256).max);
        bytes32 id = escrow.lockFor(INTENT, IERC20(address(blk)), buyer, seller, buyer, uint64(block.timestamp + 100), 1e6);
        vm.stopPrank();
        blk.block_(seller);
        vm.prank(operator);
        escrow.releasePartial(id, 250_000);
        assertEq(blk.balanceOf(buyer), 750_000, "buyer got its part");
        assertEq(escrow.pendingWithdrawals(address(blk), seller), 250_000, "seller credited");
        blk.block_(address(0));
        vm.prank(stranger);
        escrow.withdrawFor(IERC20(address(blk)), seller);
        assertEq(blk.balanceOf(seller), 250_000, "paid to the seller itself");
        assertEq(blk.balanceOf(stranger), 0, "never to the caller");
        vm.expectRevert(PactTokenEscrow.NothingToWithdraw.selector);
        escrow.withdrawFor(IERC20(address(blk)), seller);
    }

    function test_lock_twice_and_zero_amount_revert() public {
        bytes32 id = _lock();
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactTokenEscrow.AlreadyExists.selector, id));
        escrow.lockFor(INTENT, IERC20(address(usdc)), buyer, seller, buyer, uint64(block.timestamp + 100), AMOUNT);
        vm.prank(operator);
        vm.expectRevert(PactTokenEscrow.ZeroAmount.selector);
        escrow.lockFor(keccak256("x"), IERC20(address(usdc)), buyer, seller, buyer, uint64(block.timestamp + 100), 0);
    }

    /// forge fuzzes `sellerAmount`: every split conserves the money, and none above the amount
    /// moves any.
    function testFuzz_partial_release_conserves_amount_and_bond(uint256 sellerAmount) public {
        bytes32 id = _lockBonded();
        uint256 buyerBefore = usdc.balanceOf(buyer);
        uint256 sellerBefore = usdc.balanceOf(seller);
        vm.prank(operator);
        if (sellerAmount > AMOUNT) {
            vm.expectRevert(abi.encodeWithSelector(PactTokenEscrow.AmountExceedsEscrow.selector, sellerAmount, AMOUNT));
            escrow.releasePartial(id, sellerAmount);
            assertEq(usdc.balanceOf(address(escrow)), AMOUNT + BOND, "nothing moved");
            return;
        }
        escrow.releasePartial(id, sellerAmount);
        assertEq(usdc.balanceOf(seller) - sellerBefore, sellerAmount + BOND, "seller part + bond");
        assertEq(usdc.balanceOf(buyer) - buyerBefore, AMOUNT - sellerAmount, "buyer the rest");
        assertEq(usdc.balanceOf(address(escrow)), 0, "nothing left behind");
    }

    // -- payOut: a payout of deferred credit, exactly the amount, once per payout id ---------

    function _deferredToBlockedSeller() internal returns (bytes32 id) {
        id = _lockBonded();
        usdc.setBlocked(seller, true); // the test token's USDC-style blacklist
        vm.prank(operator);
        escrow.releasePartial(id, 500_000); // 0.5 + 0.3 bond deferred
        usdc.setBlocked(seller, false);
    }

    function test_pay_out_pays_exactly_the_amount_once_per_payout_id() public {
        _deferredToBlockedSeller();
        assertEq(escrow.pendingWithdrawals(address(usdc), seller), 800_000, "seller credited");
        uint256 before = usdc.balanceOf(seller);
        bytes32 po = keccak256("po-1");
        vm.prank(operator);
        escrow.payOut(po, IERC20(address(usdc)), seller, 300_000);
        assertEq(usdc.balanceOf(seller), before + 300_000, "exactly the amount");
        assertEq(escrow.pendingWithdrawals(address(usdc), seller), 500_000, "the rest still owed");
        (address payee, address token, uint256 amount) = escrow.payouts(po);
        require(payee == seller && token == address(usdc), "recorded payee and token");
        assertEq(amount, 300_000, "recorded amount");
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactTokenEscrow.PayoutExists.selector, po));
        escrow.payOut(po, IERC20(address(usdc)), seller, 300_000);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactTokenEscrow.InsufficientCredit.selector, 500_001, 500_000));
        escrow.payOut(keccak256("po-2"), IERC20(address(usdc)), seller, 500_001);
        assertEq(usdc.balanceOf(seller), before + 300_000, "nothing paid twice or beyond the credit");
    }

    function test_pay_out_is_operator_only_and_a_refused_transfer_keeps_the_credit() public {
        _deferredToBlockedSeller();
        vm.prank(stranger);
        vm.expectRevert(PactTokenEscrow.NotOperator.selector);
        escrow.payOut(keccak256("po-1"), IERC20(address(usdc)), seller, 1);
        usdc.setBlocked(seller, true);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactTokenEscrow.TransferFailed.selector, seller, 800_000));
        escrow.payOut(keccak256("po-1"), IERC20(address(usdc)), seller, 800_000);
        assertEq(escrow.pendingWithdrawals(address(usdc), seller), 800_000, "credit kept");
        (address payee,,) = escrow.payouts(keccak256("po-1"));
        require(payee == address(0), "nothing recorded");
    }
}
