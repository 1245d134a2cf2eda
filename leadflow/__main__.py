"""`python -m leadflow`: the `leadflow` command."""

from leadflow.cli.main import entry

if __name__ == "__main__":
    entry()
