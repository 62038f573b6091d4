"""schemathesis against the server's own OpenAPI document: no input makes it answer 5xx, and
every operation refuses callers without a token (401) and writers with a read-only one (403)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from railcar.server.api import ServerSettings
from railcar.server.vocab import Role
from tests.server.conftest import Clock
from tests.server.test_admin_api import Api, make_api, publish


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    for api in make_api(db_url, ServerSettings(clock=Clock())):
        publish(api)
        yield api


def test_no_input_causes_a_server_error(api: Api) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def call(case: schemathesis.Case[Any]) -> None:
            response = case.call(headers=api.headers(Role.ADMIN))
            case.validate_response(response, checks=[not_a_server_error])

        call()


def test_every_operation_needs_a_token(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    operations = [(path, method) for path, item in document["paths"].items() for method in item]
    assert len(operations) >= 20
    for path, method in operations:
        url = path.replace("{", "").replace("}", "")
        anonymous = api.client.request(method.upper(), url)
        assert anonymous.status_code == 401, (method, path)
        if method != "get":
            reader = api.client.request(
                method.upper(), url, headers=api.headers(Role.READ_ONLY), json={}
            )
            assert reader.status_code == 403, (method, path)


def test_docs_are_served(api: Api) -> None:
    assert isinstance(api.client, TestClient)
    assert api.client.get("/openapi.json").json()["info"]["title"] == "Railcar update server"
