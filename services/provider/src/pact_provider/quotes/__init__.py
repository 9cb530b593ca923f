"""The optional shared quote store (bare ACCEPTs from reference-SDK buyers)."""
