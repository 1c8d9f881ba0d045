"""Rolling-window state per subscriber and per calling number, and the feature vector built from it.

The public face: ``features.registry`` (every feature once: names, blocks, sentences, ``FEATURES_HASH``),
``features.params`` (every constant that shapes a value), ``features.steps`` (the one step order, for the
offline ``features.pipeline.FeatureEngine`` and the stream agents) and ``features.vector.FeatureRow``.
"""
