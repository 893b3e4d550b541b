"""``symbptt scalar-view``: the derivation written out entry by entry (``explicit``: also the
brute-force ground truth of the tests), shown by ``view``; ``command`` is the subcommand.
"""
