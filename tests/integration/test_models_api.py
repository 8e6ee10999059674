"""Every published model over HTTP: the catalogue serves it, and every example behaves as it
states when posted to the reporting endpoint."""

from __future__ import annotations

import httpx
import pytest

from schemas.catalogue import Example, MessageModel, load_catalogue
from tests.integration.helpers import wait_for_status

CASES = [
    pytest.param(model, example, id=f"{model.key}:{example.name}")
    for model in load_catalogue()
    for example in model.examples
]


@pytest.mark.parametrize(("model", "example"), CASES)
async def test_example_through_the_endpoint(
    client: httpx.AsyncClient, auth: dict[str, str], model: MessageModel, example: Example
) -> None:
    url = f"/v1/messages/{model.message_type}/{model.version}"
    response = await client.post(url, json=example.message, headers=auth)
    if example.expected.get("message_rejected"):
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_message"
        got = [{"rule_id": f["rule_id"], "path": f["path"]} for f in response.json()["findings"]]
        assert got == example.expected["message"]
        return
    assert response.status_code == 202, response.text
    receipt = response.json()
    got_items = {
        item["path"]: [{"rule_id": f["rule_id"], "path": f["path"]} for f in item["findings"]]
        for item in receipt["items"]
    }
    if example.valid:
        assert all(findings == [] for findings in got_items.values())
        final = await wait_for_status(client, receipt["receipt_id"], auth, {"applied"})
        assert final["counts"]["applied"] == final["counts"]["items"]
    else:
        assert got_items == example.expected["items"]


async def test_catalogue_serves_every_model(client: httpx.AsyncClient) -> None:
    listed = {
        (m["message_type"], m["version"]): m for m in (await client.get("/v1/message-types")).json()
    }
    assert set(listed) == {(m.message_type, m.version) for m in load_catalogue()}
    for (message_type, version), summary in listed.items():
        assert summary["status"] in ("active", "deprecated")
        detail = (await client.get(summary["href"])).json()
        assert detail["json_schema"]["$schema"].endswith("2020-12/schema")
        assert detail["avro_schema"]["type"] == "array"
        assert detail["examples"]
        avsc = await client.get(summary["avro_schema_href"])
        assert avsc.headers["content-type"].startswith("application/avro+json")
        js = await client.get(summary["json_schema_href"])
        assert js.json()["title"] == f"{message_type} v{version}"
    openapi = (await client.get("/openapi.json")).json()
    refs = openapi["paths"]["/v1/messages/{message_type}/{version}"]["post"]["requestBody"][
        "content"
    ]["application/json"]["schema"]["anyOf"]
    assert len(refs) == len(listed)
    for ref in refs:
        name = ref["$ref"].rsplit("/", 1)[1]
        assert openapi["components"]["schemas"][name]["type"] == "array"
