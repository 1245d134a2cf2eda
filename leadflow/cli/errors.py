"""What the CLI says to the user as `leadflow: <message>` with exit 1, never as a traceback."""


class UserError(Exception):
    pass
