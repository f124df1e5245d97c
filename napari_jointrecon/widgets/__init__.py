"""Dock widgets: thin forms over the public API."""
