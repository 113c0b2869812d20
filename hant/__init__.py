"""hant."""
