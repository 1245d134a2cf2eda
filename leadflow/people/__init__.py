"""A person's data across everything leadflow keeps: found (`person`), written out in one
document (`export`), removed (`erase`, its Temporal part in `runs`), and the record kept of each
erasure (`erasures`). See docs/people.md."""
