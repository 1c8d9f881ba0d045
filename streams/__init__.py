"""The streaming edge: event types, decoding, topics and the Faust app with its agents."""
