from diffs.pruning import *  # TEMPORARY: moved here when the diffs helper finishes
