"""Coverage-guided fuzzing of the event and batch parsers (`python -m fuzz`)."""
