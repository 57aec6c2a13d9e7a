"""Local development server for the relay and an emulator of CIJ's push data receiver (not deployed)."""
