"""Release tools: ship a prior, choose its checkpoint, re-measure and render the README (`python -m tools.NAME`)."""
