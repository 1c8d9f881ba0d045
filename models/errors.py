"""Exceptions of the model layer."""

from __future__ import annotations


class ModelError(Exception):
    """Base of every model-layer error."""


class NoModel(ModelError):
    """The registry holds no model (or none promoted)."""


class UnknownVersion(ModelError):
    """A version named by the user is not in the registry."""


class FeatureMismatch(ModelError):
    """A model was trained on other features than the serving code computes."""


class TrainingDataError(ModelError):
    """The training data cannot produce a model (e.g. no positive events)."""
