"""A property-based run over the API's own OpenAPI schema (schemathesis): generated requests,
valid and not, against the live API (uvicorn, a worker, a Temporal dev server) with an admin
key. No answer may be a 500, use a status the schema does not name, or break its schema.
Bounded: a fixed number of examples per operation."""

from __future__ import annotations

import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.support.stack import KEYS, Stack


@schemathesis.serializer("message/rfc822")
def _raw_message(_ctx: object, value: object) -> bytes:
    """POST /v1/mail/inbound takes a raw message: what was generated, as bytes (text or not)."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, shared_server):
    with Stack(tmp_path_factory.mktemp("schema"), queue="schema", server=shared_server) as s:
        yield s


def test_no_request_makes_a_500_or_an_answer_outside_the_schema(stack):
    api = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    headers = {"Authorization": f"Bearer {KEYS['admin']}"}
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    failures: list[str] = []
    operations = 0
    for found, mode in ((f, m) for f in api.get_all_operations() for m in schemathesis.GenerationMode):
        operation = found.ok()
        operations += 1

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=stack.url, headers=headers, checks=checks)

        try:
            call()
        except hypothesis.errors.Unsatisfiable:  # nothing to get wrong (e.g. /healthz has no input)
            continue
        except Exception as err:  # noqa: BLE001 (every operation is run; all failures are told)
            failures.append(f"{operation.label} ({mode.value}): {str(err)[:1500]}")
    assert operations >= 2 * 10
    assert not failures, "\n\n".join(failures)
