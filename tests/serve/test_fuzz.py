"""Schema-driven fuzzing (schemathesis) of the live server's OpenAPI spec: valid and invalid generated requests to
every operation; none gets a 5xx, and every response matches the documented status codes, content types and
schemas."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from live_server import live_server
from schemathesis import GenerationMode, checks

from vlfuse.api import load_run
from vlfuse.serve import create_app

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def fuzzer(operation, mode: GenerationMode, seen: list[int]):
    """A hypothesis test sending generated requests to one operation; records /v1/predict's statuses in `seen`."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def fuzz(case):
        response = case.call(timeout=30)
        if operation.path == "/v1/predict":
            seen.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    return fuzz


def test_fuzzed_requests_get_no_server_error(tiny_run_dir):
    statuses: dict[GenerationMode, list[int]] = {GenerationMode.POSITIVE: [], GenerationMode.NEGATIVE: []}
    with live_server(create_app(load_run(tiny_run_dir))) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/predict", "/v1/info", "/healthz"}
        for mode, operation in [(mode, op) for mode in statuses for op in operations]:
            if mode is GenerationMode.NEGATIVE and not operation.body:
                continue  # nothing to invalidate in a GET without parameters
            fuzzer(operation, mode, statuses[mode])()
    # the fuzzer really exercised the endpoint: generated requests were answered, and invalid ones refused
    everything = statuses[GenerationMode.POSITIVE] + statuses[GenerationMode.NEGATIVE]
    assert len(statuses[GenerationMode.POSITIVE]) >= 20 and len(statuses[GenerationMode.NEGATIVE]) >= 20
    assert 200 in everything and 422 in statuses[GenerationMode.NEGATIVE], statuses
