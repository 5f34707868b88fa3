"""The sentiment app."""
