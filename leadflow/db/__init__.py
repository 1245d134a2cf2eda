"""The shared database: its tables (schema), their migrations, and the connection every
part of leadflow opens (ledger: deliveries and suppressions beside it)."""
