"""From a risk decision to a responder at the door: levels, cases, dispatch, delivery."""
