"""`leadflow import`: a CRM export (CSV, or JSON Lines of events) read through a map into the event
archive, as the history that the funnel, `policy simulate`, `diff` and `suggest` read (docs/import.md).

mapping: the map file, checked with its lines; reading: the export's records with their line
numbers; cells: a cell's text as a number, a yes/no, a time; rows: a CSV record to its lead's events;
archiving: events into the archive, once; command: `run_import`, what the command line calls."""
