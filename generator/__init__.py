"""Seeded synthetic IoT event generator writing JSON Lines into the Bronze zone."""
