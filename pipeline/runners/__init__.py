"""One runner per backend, all with the same small interface (see base.Runner)."""
