"""Loopback servers that speak the real protocols the relay talks to (Key Vault, managed identity, CIJ)."""
