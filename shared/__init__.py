"""Core of the CIJ push-open relay: everything except the Azure Functions adapter."""
