"""Code evolution: programs and where they live in files, the model's edits to them, the archive of elites, and
what the ``evolve`` proposer builds from them."""
