"""One module per ``fawkes-eval`` verb: ``add_parser(verbs)`` registers it, the handler runs it.

Command modules import only argparse at module level, so building the parser for ``--help`` stays fast.
"""

COMMANDS = ("demo", "audit", "validate", "run", "list", "zoo", "report", "compare", "sweep", "cloak")
