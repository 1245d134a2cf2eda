"""`leadflow person export|erase WHO`: everything leadflow holds about a person as one JSON
document, or all of it removed (leadflow.people). The operator's command: it holds Temporal and
the shared database itself, as the API's ops and admin roles do."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from leadflow.cli.errors import UserError
from leadflow.settings import Settings


def add_commands(sub: Any) -> None:
    person = sub.add_parser("person", help="a person's data: export it, or erase it everywhere")
    psub = person.add_subparsers(dest="action", required=True)
    ex = psub.add_parser("export", help="everything leadflow holds about the person, as one JSON document")
    ex.add_argument("who", help="e-mail, external id or lead-... workflow id")
    ex.add_argument("--out", help="write the document here instead of to stdout")
    er = psub.add_parser("erase", help="remove the person everywhere leadflow keeps them (their runs "
                                       "in Temporal, the archive, the ledger, endings, seen ids, visits, the "
                                       "mail sink); a suppression stays as a hash. Cannot be undone")
    er.add_argument("who", help="e-mail, external id or lead-... workflow id")
    er.add_argument("--yes", action="store_true", help="do it without asking")
    er.add_argument("--by", default="", help="who asked for it, for the record (default: your login name)")


def run(args: argparse.Namespace) -> int:
    if args.action == "erase" and not args.yes:
        if not sys.stdin.isatty():
            raise UserError("person erase: add --yes to erase without a terminal to confirm on")
        said = input(f"Erase {args.who} and every lead merged with it, for good? Type the id again: ")
        if said.strip() != args.who.strip():
            print("leadflow: nothing erased", file=sys.stderr)
            return 1
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from leadflow.db.database import Database
    from leadflow.people.person import NoSuchPerson
    from leadflow.temporal import connect

    settings = Settings.from_env()
    client = await connect(settings)
    ledger = await asyncio.to_thread(Database.of, settings)
    try:
        if args.action == "export":
            from leadflow.people.export import export

            document = await export(client, ledger, args.who)
            text = json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
            if args.out:
                with open(args.out, "w", encoding="utf-8") as out:
                    out.write(text)
            else:
                sys.stdout.write(text)
            return 0
        from leadflow.people.erase import erase

        done = await erase(client, settings, ledger, args.who, args.by.strip() or _login())
        print(json.dumps(done))
        return 0
    except NoSuchPerson as err:
        raise UserError(str(err)) from None
    finally:
        ledger.close()


def _login() -> str:
    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):
        return "cli"
