"""Personal data never reaches Temporal in plain text: the whole service (API, worker, CLI) on a
dev server that keeps its state in a SQLite file, every client on the codec; afterwards the file
holds none of the addresses, names or companies sent, while the API, the CLI and the codec
server (for the Web UI and `temporal --codec-endpoint`) still read them for those allowed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload

from leadflow.codec.aesgcm import AesGcmCodec, CodecError
from leadflow.codec.keys import CodecKeysInvalid, Keyring, load, new_key_line
from leadflow.settings import SettingsError
from leadflow.temporal import binary
from rules.identity import lead_key
from rules.models import LeadRef
from tests.support.stack import KEYS, Stack
from tests.support.stack import until as _until
from tests.support.temporal_harness import ROOT

OLD, NEW = new_key_line(), new_key_line()
PEOPLE = [{"email": f"zelda.quimby{i}@pii-{i}.example", "first_name": f"Zelda{i}", "last_name": "Quimbyworth",
           "company": f"Xylophonic Widgets {i} Ltd", "role": "vp", "budget": 60000, "timeline": "now",
           "company_size": 300} for i in range(3)]




def test_keys_rotate_and_bad_keys_are_refused_by_item(tmp_path):
    old = AesGcmCodec(Keyring.parse(OLD))
    sealed = old.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b'{"email":"a@b.example"}'))
    assert b"a@b.example" not in sealed.SerializeToString()
    assert sealed.metadata["encryption-key-id"] == OLD.split(":")[0].encode()
    rotated = AesGcmCodec(Keyring.parse(f"{NEW},{OLD}"))  # the new key encrypts, the old still decrypts
    assert rotated.decrypt(sealed).data == b'{"email":"a@b.example"}'
    assert rotated.encrypt(Payload(data=b"x")).metadata["encryption-key-id"] == NEW.split(":")[0].encode()
    with pytest.raises(CodecError, match="which the codec keys do not hold"):
        AesGcmCodec(Keyring.parse(NEW)).decrypt(sealed)  # the old key retired too early: said, by id
    forged = Payload(metadata={**sealed.metadata, "encryption-key-id": NEW.split(":")[0].encode()},
                     data=sealed.data)
    with pytest.raises(CodecError, match="does not decrypt"):
        rotated.decrypt(forged)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b"{}")
    assert rotated.decrypt(plain) == plain  # histories from before the codec still read
    short = "k1:" + base64.b64encode(b"x" * 16).decode()
    for text, said in ((short, "item 1 (k1): the key is 16 bytes"), (f"{NEW},nocolon", "item 2: write id:"),
                       ("k1:!!!", "item 1 (k1): the key is not base64"), (f"{OLD},{OLD}", "listed twice"),
                       (" , ", "no key")):
        with pytest.raises(CodecKeysInvalid, match=re.escape(said)) as err:
            Keyring.parse(text)
        assert OLD.split(":")[1] not in str(err.value)
    # none set: one key made under home, the same for every process that asks
    first, where = load("", tmp_path)
    assert where.endswith("codec-keys") and load("", tmp_path)[0] == first
    assert oct((tmp_path / "codec-keys").stat().st_mode & 0o777) == "0o600"
    from leadflow.settings import Settings

    with pytest.raises(SettingsError, match="LEADFLOW_CODEC_KEYS: item 1"):
        Settings.from_env({"LEADFLOW_CODEC_KEYS": short}).keyring()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("codec")
    with Stack(home, queue="codec", codec_keys=f"{NEW},{OLD}", database=True) as s:
        yield s


def _cli(stack: Stack, *args: str, keys: str = f"{NEW},{OLD}") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEADFLOW_HOME": str(stack.settings.home), "LEADFLOW_CODEC_KEYS": keys,
           "LEADFLOW_DEV_PORT": str(stack.settings_port), "LEADFLOW_TASK_QUEUE": "codec"}
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "leadflow", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_temporal_keeps_no_personal_data_and_those_allowed_still_read_it(stack):
    # admin: it sends events and may read the lead that ?wait=true answers with
    intake, sales, ops = stack.http("admin"), stack.http("sales"), stack.http("ops")
    for person in PEOPLE:
        lead = {"email": person["email"]}
        assert intake.post("/v1/events?wait=true", json={"type": "signup", "lead": person}).status_code == 200
        assert intake.post("/v1/events?wait=true", json={"type": "demo_request", "lead": lead,
                                                          "data": {"note": f"call {person['email']}"}}
                           ).status_code == 200
    # the API reads through the codec: the query answer and the hand-off task carry the person
    shown = sales.get(f"/v1/leads/{PEOPLE[0]['email']}").json()
    assert shown["profile"]["email"] == PEOPLE[0]["email"] and shown["state"] == "sales-ready"
    task_id = shown["open_handoff"]
    assert _until(lambda: sales.get(f"/v1/tasks/{task_id}").status_code == 200)
    assert PEOPLE[0]["company"] in json.dumps(sales.get(f"/v1/tasks/{task_id}").json())
    # so does the CLI, given the same keys; with other keys it says why it cannot
    cli = _cli(stack, "lead", PEOPLE[1]["email"], "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["profile"]["company"] == PEOPLE[1]["company"]

    # the codec server: what Temporal holds, decrypted for ops only
    handle = stack.client.get_workflow_handle(lead_key(LeadRef(email=PEOPLE[2]["email"])))
    history = stack.run(handle.fetch_history())
    stored = [p for e in history.events for p in _payloads(e)]
    sealed = [p for p in stored if p.metadata["encoding"] == b"binary/encrypted"]
    # the SDK's own markers (patches, local-activity timing) and search attributes stay plain
    plain = [p.data for p in stored if p not in sealed]
    assert len(sealed) > 5 and not [d for d in plain if b"@" in d or b"Zelda" in d], plain
    wire = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in sealed]}
    decoded = ops.post("/codec/decode", json=wire, headers={"X-Namespace": "default"})
    assert decoded.status_code == 200, decoded.text
    text = b"".join(base64.b64decode(p["data"]) for p in decoded.json()["payloads"])
    assert PEOPLE[2]["email"].encode() in text
    assert sales.post("/codec/decode", json=wire).status_code == 403
    assert stack.http().post("/codec/decode", json=wire).status_code == 401
    again = ops.post("/codec/encode", json=decoded.json()).json()
    assert ops.post("/codec/decode", json=again).json() == decoded.json()
    # Temporal's own CLI through the codec server (it sends `{}` for a query without arguments)
    shown = subprocess.run(
        [binary("temporal"), "workflow", "query", "--address", f"127.0.0.1:{stack.settings_port}",
         "--workflow-id", handle.id, "--type", "state", "--codec-endpoint", f"{stack.url}/codec",
         "--codec-auth", f"Bearer {KEYS['ops']}", "--output", "json"],
        capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and PEOPLE[2]["company"] in shown.stdout, shown.stderr or shown.stdout
    assert ops.post("/codec/decode", json={}).json() == {"payloads": []}
    # the Web UI calls it from its own origin, with the ops page session as its credential
    ui = "http://localhost:8233"
    pre = stack.http().options("/codec/decode", headers={
        "Origin": ui, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ui
    assert pre.headers["access-control-allow-credentials"] == "true"
    assert "x-namespace" in pre.headers["access-control-allow-headers"]
    assert stack.http().options("/codec/decode", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}).status_code == 403
    assert "access-control-allow-origin" not in stack.http("ops").get(
        "/v1/policies", headers={"Origin": ui}).headers  # CORS is for the codec only
    browser = stack.http()
    login = browser.get("/login")
    csrf = login.text.split('name="csrf" value="')[1].split('"')[0]
    assert browser.post("/login", data={"key": KEYS["ops"], "csrf": csrf}).status_code in (200, 303)
    by_session = browser.post("/codec/decode", json=wire, headers={"Origin": ui})
    assert by_session.status_code == 200 and by_session.headers["access-control-allow-origin"] == ui
    assert by_session.json() == decoded.json()
    wrong_key = "k9:" + base64.b64encode(os.urandom(32)).decode()
    refused = _cli(stack, "lead", PEOPLE[1]["email"], keys=wrong_key)
    assert refused.returncode == 1 and "which the codec keys do not hold" in refused.stderr, refused.stderr

    # what the server keeps, read as bytes after it has written it all
    workflow_id = handle.id.encode()
    stack.run(asyncio.sleep(2))
    files = [p for p in stack.settings.home.iterdir() if p.name.startswith("temporal.db")]
    kept = b"".join(p.read_bytes() for p in files)
    assert workflow_id in kept and b"binary/encrypted" in kept  # the file does hold the leads' histories
    personal = [v.lower().encode() for person in PEOPLE for v in (
        person["email"], person["first_name"], person["company"], person["email"].split("@")[1])]
    assert [s for s in personal if s in kept.lower()] == []



def _payloads(message: Message) -> list[Payload]:
    """Every payload anywhere in a history event (inputs, signals, updates, markers, results)."""
    if isinstance(message, Payload):
        return [message]
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Message):
                found += _payloads(item)
    return found
