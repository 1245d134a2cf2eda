"""What people do to leads, tasks, the roster, deliveries and policies: one layer that the
API, the pages and the CLI share, so each thing is done one way."""
