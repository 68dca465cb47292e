"""AgentStore: load once and cache, mtime reload, keys in one lookup, secrets encrypted at rest."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mediasrv.agent.store import AgentStore, ProviderKeys
from mediasrv.errors import ConfigError

OPENAI_KEY = "sk-test-0123456789abcdefSECRET"


def write_agent(directory: Path, name: str = "sales", **fields: object) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"name": name, **fields}))
    return path


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    d = tmp_path / "agents"
    d.mkdir()
    (d / "kb").mkdir()
    (d / "kb" / "prices.md").write_text("# Prices\n\nThe Gold plan costs $40 per month.\n")
    return d


def test_agent_is_loaded_once_with_its_index_and_cached(agents: Path, tmp_path: Path) -> None:
    write_agent(agents, knowledge_base=["kb/prices.md"], kb_top_k=1)
    (agents / "support.toml").write_text('name = "support"\ngreeting = "Support, hi."\n')
    store = AgentStore(agents, tmp_path / "var" / "m.db", env={})
    assert store.load_all() == ["sales", "support"]
    first = store.get("sales")
    assert first is store.get("sales")
    assert first.kb is not None and "$40" in first.kb.prompt_block("how much is the gold plan")
    assert store.get("support").config.greeting == "Support, hi."
    assert store.get("support").kb is None
    assert store.refresh() == []  # nothing changed
    assert store.get("sales") is first
    with pytest.raises(ConfigError, match="no agent named 'nobody'"):
        store.get("nobody")


def test_mtime_change_reloads_and_a_bad_edit_keeps_the_old_version(
    agents: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_agent(agents, greeting="Hi v1")
    store = AgentStore(agents, tmp_path / "m.db", env={})
    store.load_all()
    v1 = store.get("sales")
    path.write_text(json.dumps({"name": "sales", "greeting": "Hi v2"}))
    bump_mtime(path)
    assert store.refresh() == ["sales"]
    assert store.get("sales").config.greeting == "Hi v2"
    assert v1.config.greeting == "Hi v1"  # a call holding v1 keeps it

    path.write_text(json.dumps({"name": "sales", "llm": {"temperature": "hot"}}))
    bump_mtime(path)
    with caplog.at_level(logging.ERROR, logger="mediasrv.agent.store"):
        assert store.refresh() == []
        assert store.refresh() == []  # the bad file is not parsed (nor logged) again until it changes
    assert store.get("sales").config.greeting == "Hi v2"
    assert "$.llm.temperature" in str(store.errors[path])
    assert len(caplog.records) == 1 and "sales.json" in caplog.records[0].getMessage()

    path.unlink()
    assert store.refresh() == ["sales"]
    assert store.names() == []


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"llm": {"temperature": "hot"}}, "$.llm.temperature"),
        ({"nodes": [{"id": "a", "tpye": "ending"}]}, "$.nodes[0]"),
        ({"start_node": "x", "nodes": [{"id": "a"}]}, "$.start_node"),
        (
            {"nodes": [{"id": "a", "transitions": [{"to": "b", "when": "always"}]}]},
            "$.nodes[0].transitions[0].to",
        ),
        ({"nodes": [{"id": "a", "variables": ["zip"]}]}, "$.nodes[0].variables[0]"),
        ({"knowledge_base": ["kb/missing.md"]}, "$.knowledge_base[0]"),
    ],
)
def test_bad_agent_file_is_a_config_error_naming_file_and_field(
    agents: Path, tmp_path: Path, fields: dict[str, object], where: str
) -> None:
    write_agent(agents, name="broken", **fields)
    store = AgentStore(agents, tmp_path / "m.db", env={})
    with pytest.raises(ConfigError) as info:
        store.load_all()
    assert "broken.json" in str(info.value)
    assert where in str(info.value)


def test_keys_come_from_the_environment(agents: Path, tmp_path: Path) -> None:
    write_agent(agents)
    env = {"OPENAI_API_KEY": OPENAI_KEY, "SONIOX_API_KEY": "sx", "TELNYX_PUBLIC_KEY": "pub"}
    store = AgentStore(agents, tmp_path / "m.db", env=env)
    store.load_all()
    keys = store.get("sales").keys
    assert keys == ProviderKeys(openai=OPENAI_KEY, soniox="sx", telnyx_public_key="pub")
    assert OPENAI_KEY not in repr(keys) and OPENAI_KEY not in str(keys)
    assert keys.require("openai") == OPENAI_KEY
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
        keys.require("elevenlabs")


def test_stored_secrets_are_encrypted_at_rest_and_take_precedence(agents: Path, tmp_path: Path) -> None:
    write_agent(agents)
    write_agent(agents, name="other")
    db = tmp_path / "m.db"
    env = {"MEDIASRV_SECRET_KEY": Fernet.generate_key().decode(), "OPENAI_API_KEY": "env-openai"}
    store = AgentStore(agents, db, env=env)
    store.set_secret("OPENAI_API_KEY", OPENAI_KEY, agent="sales")
    store.set_secret("ELEVENLABS_API_KEY", "el-global-key-XYZ")
    store.set_secret("OPENAI_API_KEY", "global-openai")  # loses to the environment
    store.load_all()
    assert store.get("sales").keys.openai == OPENAI_KEY  # the agent's own secret wins
    assert store.get("other").keys.openai == "env-openai"  # then the environment
    assert store.get("other").keys.elevenlabs == "el-global-key-XYZ"  # then the global secret

    raw = db.read_bytes()
    assert OPENAI_KEY.encode() not in raw and b"el-global-key-XYZ" not in raw
    tokens = [t for (t,) in sqlite3.connect(db).execute("SELECT token FROM secrets")]
    assert len(tokens) == 3 and all(t.startswith(b"gAAAA") for t in tokens)  # Fernet tokens


def test_secrets_without_the_right_key_are_a_config_error(agents: Path, tmp_path: Path) -> None:
    write_agent(agents)
    db = tmp_path / "m.db"
    AgentStore(agents, db, env={"MEDIASRV_SECRET_KEY": Fernet.generate_key().decode()}).set_secret(
        "XAI_API_KEY", "xai-1"
    )
    with pytest.raises(ConfigError, match="MEDIASRV_SECRET_KEY is not set"):
        AgentStore(agents, db, env={}).load_all()
    with pytest.raises(ConfigError, match="wrong key"):
        AgentStore(agents, db, env={"MEDIASRV_SECRET_KEY": Fernet.generate_key().decode()}).load_all()
    with pytest.raises(ConfigError, match="MEDIASRV_SECRET_KEY must be set"):
        AgentStore(agents, db, env={}).set_secret("XAI_API_KEY", "x")
    with pytest.raises(ConfigError, match="unknown secret"):
        AgentStore(agents, db, env={}).set_secret("PASSWORD", "x")


def test_duplicate_agent_names_are_rejected(agents: Path, tmp_path: Path) -> None:
    write_agent(agents, name="a")
    (agents / "b.json").write_text(json.dumps({"name": "a"}))
    with pytest.raises(ConfigError, match="already used by a.json"):
        AgentStore(agents, tmp_path / "m.db", env={}).load_all()


def test_a_new_secret_reaches_cached_agents(agents: Path, tmp_path: Path) -> None:
    write_agent(agents)
    store = AgentStore(agents, tmp_path / "m.db", env={"MEDIASRV_SECRET_KEY": Fernet.generate_key().decode()})
    store.load_all()
    assert store.get("sales").keys.anthropic is None
    store.set_secret("ANTHROPIC_API_KEY", "ant-1", agent="sales")
    assert store.get("sales").keys.anthropic == "ant-1"


def test_a_new_file_reusing_a_name_is_refused_on_refresh(agents: Path, tmp_path: Path) -> None:
    write_agent(agents, name="a", greeting="first")
    store = AgentStore(agents, tmp_path / "m.db", env={})
    store.load_all()
    copy = agents / "z.json"
    copy.write_text(json.dumps({"name": "a", "greeting": "second"}))
    store.refresh()
    assert store.get("a").config.greeting == "first"
    assert "already used by a.json" in str(store.errors[copy])
