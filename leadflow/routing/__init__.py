"""Sales routing: the roster sales own, and which rep of a queue takes each hand-off."""
