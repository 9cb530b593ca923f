"""Signed RECEIPTs: every terminal outcome of a settlement, signed with the service's own key."""
