"""``symbptt check``: a learner's hand-written BPTT held against the derivation, run in a child
process (``process``, ``runner``), at chosen points (``points``), its mistakes found among the
catalogued variants (``variants``, ``diagnose``) and reported (``report``); ``command`` is the
subcommand.
"""
