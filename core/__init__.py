"""The ground floor: the contract as code, settings, errors, levels, pseudonyms, logs and a clock.

Every other package imports it; it imports none of them.
"""
