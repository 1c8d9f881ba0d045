"""Shared plumbing of the fraud early-warning service: settings, CLI, simulator, embedded services."""
