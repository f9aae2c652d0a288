"""Raw clickstream -> clean, sessionized per-user sequences: the build behind
``jobs/build_sequences.py`` (sources, readers, diagnosis, cleaning, sessions, vocabularies,
sequences, items; ``build`` runs them in order)."""
