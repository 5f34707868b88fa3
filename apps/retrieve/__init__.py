"""``POST /retrieve``: cited evidence from a named corpus (dense, lexical, graph, hybrid)."""
