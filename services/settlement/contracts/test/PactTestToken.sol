// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title PactTestToken
/// @notice A USDC stand-in for tests and development chains: 6 decimals, EIP-2612 `permit`
/// (OpenZeppelin ERC20Permit), minted by its owner, and USDC's blacklist (`setBlocked`: the
/// owner stops an address from receiving), so tests can make a real push to a payee fail.
/// Never deployed to a real chain.
contract PactTestToken is ERC20, ERC20Permit, Ownable {
    /// @notice Addresses this token refuses to transfer to.
    mapping(address => bool) public blocked;

    /// @notice A transfer to a blocked address.
    error Blocked(address to);

    constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) ERC20Permit(name_) Ownable(msg.sender) {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    function setBlocked(address account, bool isBlocked) external onlyOwner {
        blocked[account] = isBlocked;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blocked[to]) revert Blocked(to);
        super._update(from, to, value);
    }
}
