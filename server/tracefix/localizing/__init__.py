"""Localizing: which functions and lines made a test fail, ranked with their evidence in words.

rank.py is the pure core (plain data in, Suspects out); versions.py finds what differs from the
versions under which tests passed; gather.py reads that evidence from a Project's index and store.
"""
