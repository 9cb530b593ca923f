// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

import {PactEscrow} from "../../PactEscrow.sol";
import {Base, ReentrantReceiver} from "./Hostile.sol";

contract PactEscrowTest is Base {
    PactEscrow internal escrow;
    address internal operator = address(0x0e0e);
    address internal buyer = address(0xb0b);
    address internal seller = address(0x5e11);
    address internal stranger = address(0x5757);
    bytes32 internal constant INTENT = keccak256("intent-1");

    function setUp() public {
        escrow = new PactEscrow();
        escrow.addOperator(operator);
        vm.deal(operator, 100 ether);
        vm.deal(seller, 10 ether);
        vm.warp(1_000_000);
    }

    function _lock(address seller_) internal returns (bytes32 id) {
        vm.prank(operator);
        id = escrow.lockFor{value: 3 ether}(INTENT, buyer, seller_, buyer, uint64(block.timestamp + 100));
        vm.prank(operator);
        escrow.postBond{value: 1 ether}(id);
    }

    function test_partial_release_splits_amount_and_returns_the_bond() public {
        bytes32 id = _lock(seller);
        uint256 sellerBefore = seller.balance;
        vm.prank(operator);
        escrow.releasePartial(id, 1 ether);
        assertEq(seller.balance, sellerBefore + 2 ether, "1 ether + 1 ether bond");
        assertEq(buyer.balance, 2 ether, "the rest");
        assertEq(address(escrow).balance, 0, "empty");
    }

    function test_partial_release_above_the_amount_reverts() public {
        bytes32 id = _lock(seller);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactEscrow.AmountExceedsEscrow.selector, 3 ether + 1, 3 ether));
        escrow.releasePartial(id, 3 ether + 1);
    }

    function test_double_partial_release_reverts() public {
        bytes32 id = _lock(seller);
        vm.prank(operator);
        escrow.releasePartial(id, 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactEscrow.NotLocked.selector, id, PactEscrow.State.PartiallyReleased));
        escrow.releasePartial(id, 1);
    }

    function test_rejecting_seller_cannot_block_the_buyer_and_withdraw_for_pays_it_later() public {
        ReentrantReceiver hostile = new ReentrantReceiver();
        hostile.setReject(true);
        bytes32 id = _lock(address(hostile));
        vm.prank(operator);
        escrow.releasePartial(id, 1 ether);
        assertEq(buyer.balance, 2 ether, "buyer got its part");
        assertEq(escrow.pendingWithdrawals(address(hostile)), 2 ether, "seller credited");
        hostile.setReject(false);
        vm.prank(stranger);
        escrow.withdrawFor(address(hostile));
        assertEq(address(hostile).balance, 2 ether, "paid to the payee itself");
        assertEq(stranger.balance, 0, "never to the caller");
    }

    function test_reentrant_seller_cannot_reenter_on_release() public {
        ReentrantReceiver hostile = new ReentrantReceiver();
        bytes32 id = _lock(address(hostile));
        hostile.arm(address(escrow), abi.encodeCall(PactEscrow.refund, (id)));
        vm.prank(operator);
        escrow.release(id);
        require(hostile.reentryBlocked(), "re-entry was tried and refused");
        assertEq(address(hostile).balance, 4 ether, "released once");
    }

    function test_refund_before_deadline_by_non_operator_reverts() public {
        bytes32 id = _lock(seller);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(PactEscrow.DeadlineNotPassed.selector, uint64(block.timestamp + 100), block.timestamp)
        );
        escrow.refund(id);
    }

    function test_withdraw_for_with_nothing_pending_reverts() public {
        vm.expectRevert(PactEscrow.NothingToWithdraw.selector);
        escrow.withdrawFor(seller);
    }

    // -- payOut: a payout of deferred credit, exactly the amount, once per payout id ---------

    function _deferred(ReentrantReceiver hostile) internal {
        hostile.setReject(true);
        bytes32 id = _lock(address(hostile));
        vm.prank(operator);
        escrow.releasePartial(id, 1 ether); // 1 ether + 1 ether bond deferred
        hostile.setReject(false);
    }

    function test_pay_out_pays_exactly_the_amount_once_per_payout_id() public {
        ReentrantReceiver hostile = new ReentrantReceiver();
        _deferred(hostile);
        bytes32 po = keccak256("po-1");
        vm.prank(operator);
        escrow.payOut(po, address(hostile), 0.5 ether);
        assertEq(address(hostile).balance, 0.5 ether, "exactly the amount");
        assertEq(escrow.pendingWithdrawals(address(hostile)), 1.5 ether, "the rest still owed");
        (address payee, uint256 amount) = escrow.payouts(po);
        require(payee == address(hostile), "recorded payee");
        assertEq(amount, 0.5 ether, "recorded amount");
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactEscrow.PayoutExists.selector, po));
        escrow.payOut(po, address(hostile), 0.5 ether);
        assertEq(address(hostile).balance, 0.5 ether, "a replay pays nothing");
    }

    function test_pay_out_above_the_credit_reverts() public {
        ReentrantReceiver hostile = new ReentrantReceiver();
        _deferred(hostile);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactEscrow.InsufficientCredit.selector, 2 ether + 1, 2 ether));
        escrow.payOut(keccak256("po-big"), address(hostile), 2 ether + 1);
        vm.prank(operator);
        escrow.payOut(keccak256("po-all"), address(hostile), 2 ether);
        assertEq(escrow.pendingWithdrawals(address(hostile)), 0, "all paid");
    }

    function test_pay_out_is_operator_only() public {
        ReentrantReceiver hostile = new ReentrantReceiver();
        _deferred(hostile);
        vm.prank(stranger);
        vm.expectRevert(PactEscrow.NotOperator.selector);
        escrow.payOut(keccak256("po-1"), address(hostile), 1 ether);
    }

    function test_pay_out_to_a_rejecting_payee_reverts_and_keeps_the_credit() public {
        ReentrantReceiver hostile = new ReentrantReceiver();
        _deferred(hostile);
        hostile.setReject(true);
        bytes32 po = keccak256("po-1");
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(PactEscrow.TransferFailed.selector, address(hostile), 1 ether));
        escrow.payOut(po, address(hostile), 1 ether);
        assertEq(escrow.pendingWithdrawals(address(hostile)), 2 ether, "credit kept");
        (address payee,) = escrow.payouts(po);
        require(payee == address(0), "nothing recorded");
    }

    function test_pay_out_cannot_be_reentered_by_the_payee() public {
        ReentrantReceiver hostile = new ReentrantReceiver();
        _deferred(hostile);
        hostile.arm(address(escrow), abi.encodeCall(PactEscrow.withdrawFor, (address(hostile))));
        vm.prank(operator);
        escrow.payOut(keccak256("po-1"), address(hostile), 1 ether);
        require(hostile.reentryBlocked(), "re-entry was tried and refused");
        assertEq(address(hostile).balance, 1 ether, "paid once");
        assertEq(escrow.pendingWithdrawals(address(hostile)), 1 ether, "the rest still owed");
    }
}
