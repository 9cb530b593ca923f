"""The reference SDK's provider HTTP surface, mapped onto our quote binding and settlement."""
