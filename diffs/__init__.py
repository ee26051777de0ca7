"""Neural diffs: sparse-masked and hashed deltas over a frozen base, and their update packages."""
