"""Encryption of what leadflow sends to Temporal: keys (`keys.py`) and the payload codec
(`aesgcm.py`) that every client, worker, API and CLI of one installation shares."""
