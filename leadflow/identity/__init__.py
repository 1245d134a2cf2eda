"""One lead per person: ids that turn out to name the same person are merged into one lead."""
