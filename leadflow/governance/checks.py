"""What a proposal must pass before it is kept: the file validates (schema, semantics, the
engine's limits), every template it sends exists and reads only what its leads have, and its
own tests pass."""

from __future__ import annotations

from pathlib import Path

from leadflow.delivery.content import check_policy_content
from rules.compile import CompiledPolicy, compile_policy
from rules.policytest import run_tests
from rules.validate import PolicyInvalid, load_policy_bytes


class ProposalRefused(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def checked(raw: bytes, file: str, content_dir: Path) -> CompiledPolicy:
    """The compiled version, or ProposalRefused with every problem (file:line where known)."""
    try:
        loaded = load_policy_bytes(raw, file)
        if problems := check_policy_content(loaded, content_dir):
            raise PolicyInvalid(problems)
    except PolicyInvalid as err:
        raise ProposalRefused([str(p) for p in err.problems]) from None
    compiled = compile_policy(loaded)
    failed = [f"{file}: test {result.name!r} fails: {'; '.join(result.failures)}"
              for result in run_tests(compiled) if not result.ok]
    if failed:
        raise ProposalRefused(failed)
    return compiled
