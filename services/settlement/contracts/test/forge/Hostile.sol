// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// The forge cheatcodes these tests use (forge's fixed cheatcode address; no forge-std needed).
interface Vm {
    function prank(address) external;
    function startPrank(address) external;
    function stopPrank() external;
    function warp(uint256) external;
    function deal(address, uint256) external;
    function expectRevert(bytes calldata) external;
    function expectRevert(bytes4) external;
    function addr(uint256) external returns (address);
    function sign(uint256, bytes32) external returns (uint8, bytes32, bytes32);
}

abstract contract Base {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    function assertEq(uint256 a, uint256 b, string memory what) internal pure {
        require(a == b, what);
    }
}

/// An ERC-20 that re-enters the escrow from inside `transfer` (a hostile token).
contract ReentrantToken is ERC20 {
    address public target;
    bytes public payload;
    bool public reentered;
    bytes public reentryError;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (target != address(0) && !reentered) {
            reentered = true;
            (bool ok, bytes memory err) = target.call(payload);
            require(!ok, "re-entry succeeded");
            reentryError = err;
        }
        return super.transfer(to, value);
    }
}

/// Takes a 1% fee on every transfer: the escrow must refuse it.
contract FeeToken is ERC20 {
    constructor() ERC20("Fee", "FEE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && to != address(0)) {
            uint256 fee = value / 100;
            super._update(from, address(0xdead), fee);
            value -= fee;
        }
        super._update(from, to, value);
    }
}

/// A token that refuses transfers to one blocked address (like USDC's blacklist).
contract BlockingToken is ERC20 {
    address public blocked;

    constructor() ERC20("Block", "BLK") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function block_(address who) external {
        blocked = who;
    }

    function _update(address from, address to, uint256 value) internal override {
        require(to != blocked, "blocked");
        super._update(from, to, value);
    }
}

/// A seller contract that re-enters the native escrow when paid, then accepts or rejects.
contract ReentrantReceiver {
    address public target;
    bytes public payload;
    bool public rejectPayments;
    bool public reentryBlocked;

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
    }

    function setReject(bool reject) external {
        rejectPayments = reject;
    }

    receive() external payable {
        require(!rejectPayments, "no thanks");
        if (target != address(0) && !reentryBlocked) {
            (bool ok,) = target.call(payload);
            require(!ok, "re-entry succeeded");
            reentryBlocked = true;
        }
    }
}
