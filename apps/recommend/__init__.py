"""The recommend app."""
