"""Agent store: agent files in a directory plus one SQLite file, loaded once and cached.

Rules:

- **Everything an agent needs is ready before its first call.** :meth:`AgentStore.load_all`
  (run at daemon start) parses every ``*.json``/``*.toml`` file in the agents directory,
  checks the cross-references a schema cannot (start node, transition targets, node variables,
  knowledge documents), builds the agent's :class:`~mediasrv.agent.kb.KnowledgeBase` and
  resolves its provider keys. The result is one frozen :class:`LoadedAgent`.
- **The call path only reads the cache.** :meth:`AgentStore.get` is a dict lookup: no file,
  no SQL, no decryption. A call keeps the :class:`LoadedAgent` it started with even if the
  agent is reloaded meanwhile.
- **Reload on change, off the call path.** :meth:`AgentStore.refresh` compares each file's
  ``st_mtime_ns`` (and size) with the cached one and reloads only what changed; run it from a
  worker thread (:meth:`AgentStore.watch` does so periodically). A file that fails to reload
  keeps its previous good version in the cache and its error in :attr:`AgentStore.errors`.
- **Provider keys in one lookup.** One ``SELECT`` reads the agent's own secrets and the global
  ones together; per key the order is: the agent's stored secret, then the environment
  variable (``SONIOX_API_KEY``...), then the global stored secret. Stored secrets are Fernet
  tokens (AES-128-CBC + HMAC-SHA256) under the key in ``MEDIASRV_SECRET_KEY``; the database
  never holds a plaintext key, and :class:`ProviderKeys` never prints one.
- **Config errors are ConfigError, raised at load.** The message names the file and the JSON
  path of the field (``agent sales.json: ... - at `$.llm.temperature```).
- SQLite connections are opened per operation (load time only), so the store is safe to use
  from the loop thread and from worker threads alike.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import msgspec
from cryptography.fernet import Fernet, InvalidToken

from mediasrv.agent.config import AgentConfig, load_agent
from mediasrv.agent.kb import KnowledgeBase
from mediasrv.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_DB_PATH: Final = "./var/mediasrv.db"
SECRET_KEY_ENV: Final = "MEDIASRV_SECRET_KEY"
GLOBAL_SCOPE: Final = "*"
AGENT_SUFFIXES: Final = frozenset({".json", ".toml"})

# ProviderKeys field -> environment variable (also the secret's name in the store).
KEY_ENV: Final[Mapping[str, str]] = {
    "soniox": "SONIOX_API_KEY",
    "elevenlabs": "ELEVENLABS_API_KEY",
    "openai": "OPENAI_API_KEY",
    "xai": "XAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "telnyx": "TELNYX_API_KEY",
    "telnyx_public_key": "TELNYX_PUBLIC_KEY",
}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS secrets (
    scope TEXT NOT NULL,            -- an agent name, or '*' for every agent
    name TEXT NOT NULL,             -- e.g. OPENAI_API_KEY
    token BLOB NOT NULL,            -- Fernet token; never the plaintext
    PRIMARY KEY (scope, name)
);
"""


class ProviderKeys(msgspec.Struct, frozen=True, kw_only=True):
    """Every provider credential an agent may need, resolved once at load (None: not set)."""

    soniox: str | None = None
    elevenlabs: str | None = None
    openai: str | None = None
    xai: str | None = None
    anthropic: str | None = None
    telnyx: str | None = None
    telnyx_public_key: str | None = None

    def __repr__(self) -> str:
        present = [f for f in KEY_ENV if getattr(self, f)]
        return f"ProviderKeys(set={present})"

    def require(self, provider: str) -> str:
        """The key of ``provider``, or a ConfigError naming the missing variable.

        Args:
            provider: a field name, e.g. ``"openai"``.

        Returns:
            The key.

        Raises:
            ConfigError: the key is set neither in the environment nor in the store.
        """
        value: str | None = getattr(self, provider, None)
        if not value:
            env = KEY_ENV.get(provider, provider)
            raise ConfigError(f"no {provider} key: set {env} or store it with AgentStore.set_secret")
        return value


class LoadedAgent(msgspec.Struct, frozen=True, kw_only=True):
    """An agent ready for calls: its config, knowledge index and keys."""

    config: AgentConfig
    kb: KnowledgeBase | None
    """None when the agent lists no knowledge documents."""
    keys: ProviderKeys
    path: Path
    mtime_ns: int
    size: int


def _fernet(env: Mapping[str, str]) -> Fernet | None:
    raw = env.get(SECRET_KEY_ENV)
    if not raw:
        return None
    try:
        return Fernet(raw.encode())
    except ValueError as exc:
        raise ConfigError(f"{SECRET_KEY_ENV} is not a Fernet key (32 url-safe base64-encoded bytes)") from exc


def validate_agent(cfg: AgentConfig, where: str, base_dir: Path) -> None:
    """Check what the schema cannot: references between fields, and document paths.

    Args:
        cfg: the decoded agent.
        where: the file name, for messages.
        base_dir: the directory relative knowledge paths start from.

    Raises:
        ConfigError: naming the file and the JSON path of the first bad field.
    """
    node_ids = [n.id for n in cfg.nodes]
    declared = {v.name for v in cfg.variables}
    for i, node_id in enumerate(node_ids):
        if node_id in node_ids[:i]:
            raise ConfigError(f"agent {where}: duplicate node id {node_id!r} - at `$.nodes[{i}].id`")
    if cfg.start_node is not None and cfg.start_node not in node_ids:
        raise ConfigError(f"agent {where}: unknown node {cfg.start_node!r} - at `$.start_node`")
    for i, node in enumerate(cfg.nodes):
        for j, tr in enumerate(node.transitions):
            if tr.to not in node_ids:
                raise ConfigError(
                    f"agent {where}: unknown node {tr.to!r} - at `$.nodes[{i}].transitions[{j}].to`"
                )
        for j, var in enumerate(node.variables):
            if var not in declared:
                raise ConfigError(
                    f"agent {where}: undeclared variable {var!r} - at `$.nodes[{i}].variables[{j}]`"
                )
        if node.type == "function" and not (node.webhook or "").strip():
            raise ConfigError(f"agent {where}: a function node needs a webhook - at `$.nodes[{i}].webhook`")
        if node.type == "transfer" and not node.transfer_to:
            raise ConfigError(
                f"agent {where}: a transfer node needs transfer_to - at `$.nodes[{i}].transfer_to`"
            )
    for i, doc in enumerate(cfg.knowledge_base):
        if not (base_dir / doc).exists():
            raise ConfigError(f"agent {where}: no such document {doc!r} - at `$.knowledge_base[{i}]`")


class AgentStore:
    """Agent files plus the SQLite secrets table; the cache every call reads from.

    Args:
        agents_dir: directory of ``*.json``/``*.toml`` agent files.
        db_path: the SQLite file (created with its directory if missing).
        env: where environment keys come from (default ``os.environ``; tests pass a dict).
    """

    def __init__(
        self,
        agents_dir: str | os.PathLike[str],
        db_path: str | os.PathLike[str] = DEFAULT_DB_PATH,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.agents_dir = Path(agents_dir)
        self.db_path = Path(db_path)
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.errors: dict[Path, ConfigError] = {}
        """Files whose last (re)load failed, with the error (the old version stays cached)."""
        self._by_path: dict[Path, LoadedAgent] = {}
        self._by_name: dict[str, LoadedAgent] = {}
        self._failed: dict[Path, tuple[int, int]] = {}
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
        conn.close()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=5.0)

    # --- secrets --------------------------------------------------------------------------

    def set_secret(self, name: str, value: str, *, agent: str | None = None) -> None:
        """Store a provider key encrypted with ``MEDIASRV_SECRET_KEY``.

        Args:
            name: the variable name, e.g. ``"OPENAI_API_KEY"``.
            value: the plaintext key (only its Fernet token is written).
            agent: the agent it belongs to; None for every agent.

        Raises:
            ConfigError: ``MEDIASRV_SECRET_KEY`` is missing or invalid, or ``name`` is unknown.
        """
        if name not in KEY_ENV.values():
            raise ConfigError(f"unknown secret {name!r}; expected one of {sorted(KEY_ENV.values())}")
        fernet = _fernet(self.env)
        if fernet is None:
            raise ConfigError(f"{SECRET_KEY_ENV} must be set to store secrets encrypted at rest")
        token = fernet.encrypt(value.encode())
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO secrets (scope, name, token) VALUES (?, ?, ?)"
                " ON CONFLICT (scope, name) DO UPDATE SET token = excluded.token",
                (agent or GLOBAL_SCOPE, name, token),
            )
        conn.close()
        # Cached agents see the new key at once (their next call), not at their next file change.
        for path, loaded in list(self._by_path.items()):
            if agent is None or loaded.config.name == agent:
                fresh = msgspec.structs.replace(loaded, keys=self.resolve_keys(loaded.config.name))
                self._by_path[path] = fresh
                self._by_name[loaded.config.name] = fresh

    def resolve_keys(self, agent: str) -> ProviderKeys:
        """Every provider key of ``agent``, in one query (see the module rules for precedence).

        Args:
            agent: the agent's name.

        Returns:
            The keys; a key set nowhere is None.

        Raises:
            ConfigError: stored secrets exist but cannot be decrypted (no or wrong secret key).
        """
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT scope, name, token FROM secrets WHERE scope IN (?, ?)", (agent, GLOBAL_SCOPE)
            ).fetchall()
        conn.close()
        stored: dict[tuple[str, str], bytes] = {(scope, name): token for scope, name, token in rows}
        fernet = _fernet(self.env) if stored else None
        values: dict[str, str | None] = {}
        for field, env_name in KEY_ENV.items():
            token = stored.get((agent, env_name))
            value = self.env.get(env_name) if token is None else None
            if token is None and not value:
                token = stored.get((GLOBAL_SCOPE, env_name))
            if token is not None:
                value = self._decrypt(fernet, token, env_name)
            values[field] = value or None
        return ProviderKeys(**values)

    def _decrypt(self, fernet: Fernet | None, token: bytes, name: str) -> str:
        if fernet is None:
            raise ConfigError(f"secret {name} is stored encrypted but {SECRET_KEY_ENV} is not set")
        try:
            return fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise ConfigError(
                f"secret {name} cannot be decrypted with {SECRET_KEY_ENV} (wrong key?)"
            ) from exc

    # --- agents ---------------------------------------------------------------------------

    def load(self, path: str | os.PathLike[str]) -> LoadedAgent:
        """Parse, validate, index and key one agent file (no caching; see :meth:`load_all`).

        Args:
            path: an agent file.

        Returns:
            The agent, ready for calls.

        Raises:
            ConfigError: naming the file and the field.
        """
        p = Path(path)
        try:
            st = p.stat()
        except OSError as exc:
            raise ConfigError(f"agent: cannot read {p}: {exc.strerror}") from exc
        cfg = load_agent(p)
        validate_agent(cfg, p.name, p.parent)
        kb: KnowledgeBase | None = None
        if cfg.knowledge_base:
            try:
                kb = KnowledgeBase.from_paths(
                    (p.parent / d for d in cfg.knowledge_base), k=cfg.kb_top_k, max_chars=cfg.kb_max_chars
                )
            except ConfigError as exc:
                raise ConfigError(f"agent {p.name}: {exc} - at `$.knowledge_base`") from exc
        keys = self.resolve_keys(cfg.name)
        return LoadedAgent(config=cfg, kb=kb, keys=keys, path=p, mtime_ns=st.st_mtime_ns, size=st.st_size)

    def _files(self) -> list[Path]:
        return sorted(f for f in self.agents_dir.iterdir() if f.suffix in AGENT_SUFFIXES and f.is_file())

    def load_all(self) -> list[str]:
        """Load every agent file; at daemon start, a bad file stops the start.

        Returns:
            The names of the loaded agents.

        Raises:
            ConfigError: the first bad file (naming it and the field), or two files that
                declare the same agent name.
        """
        loaded = [self.load(f) for f in self._files()]
        by_name: dict[str, LoadedAgent] = {}
        for agent in loaded:
            other = by_name.get(agent.config.name)
            if other is not None:
                raise ConfigError(
                    f"agent {agent.path.name}: name {agent.config.name!r} already used by {other.path.name}"
                    " - at `$.name`"
                )
            by_name[agent.config.name] = agent
        self._by_path = {a.path: a for a in loaded}
        self._by_name = by_name
        self.errors = {}
        self._failed = {}
        return sorted(by_name)

    def get(self, name: str) -> LoadedAgent:
        """The cached agent called ``name`` (a dict lookup: safe on the call path).

        Args:
            name: the agent's ``name`` field.

        Returns:
            The agent as last loaded successfully.

        Raises:
            ConfigError: no agent has that name.
        """
        agent = self._by_name.get(name)
        if agent is None:
            raise ConfigError(f"no agent named {name!r}; loaded: {sorted(self._by_name)}")
        return agent

    def names(self) -> list[str]:
        """Names of the cached agents, sorted."""
        return sorted(self._by_name)

    def refresh(self) -> list[str]:
        """Reload agents whose file changed (mtime or size), drop deleted ones, add new ones.

        Blocking (stat, parse, index): call it from a worker thread, never on the event loop.
        A file that fails keeps its previous version cached; its error is logged and kept in
        :attr:`errors` until the file loads again.

        Returns:
            Names of the agents (re)loaded or removed by this call.
        """
        changed: list[str] = []
        by_path = dict(self._by_path)
        files = set(self._files())
        for gone in set(by_path) - files:
            changed.append(by_path.pop(gone).config.name)
        for gone in set(self.errors) - files:
            self._forget_error(gone)
        for f in sorted(files):
            fresh = self._reload_if_changed(f, by_path.get(f))
            if fresh is not None:
                by_path[f] = fresh
                changed.append(fresh.config.name)
        by_name: dict[str, LoadedAgent] = {}
        current = set(map(id, self._by_name.values()))
        # Agents already serving calls keep their name against a newcomer that reuses it.
        for a in sorted(by_path.values(), key=lambda a: (id(a) not in current, a.path)):
            first = by_name.setdefault(a.config.name, a)
            if first is not a:
                del by_path[a.path]
                changed.remove(a.config.name)
                msg = f"agent {a.path.name}: name {a.config.name!r} already used by {first.path.name}"
                msg += " - at `$.name`"
                self._record_error(a.path, ConfigError(msg), (a.mtime_ns, a.size))
        self._by_path = by_path
        # One assignment swaps the whole name index: a concurrent get() sees old or new, never half.
        self._by_name = by_name
        if changed:
            log.info("agents reloaded: %s", ", ".join(changed))
        return changed

    def _reload_if_changed(self, f: Path, old: LoadedAgent | None) -> LoadedAgent | None:
        """The freshly loaded agent if ``f`` changed since it was last seen, else None."""
        try:
            st = f.stat()
            sig = (st.st_mtime_ns, st.st_size)
            if (old is not None and sig == (old.mtime_ns, old.size)) or self._failed.get(f) == sig:
                return None
            fresh = self.load(f)
        except ConfigError as exc:
            self._record_error(f, exc, sig)
            return None
        except OSError as exc:
            self._record_error(f, ConfigError(f"agent: cannot read {f}: {exc.strerror}"), None)
            return None
        self._forget_error(f)
        return fresh

    def _record_error(self, f: Path, err: ConfigError, sig: tuple[int, int] | None) -> None:
        if sig is not None:
            self._failed[f] = sig  # not parsed again until the file changes
        if str(self.errors.get(f)) != str(err):
            log.error("agent not (re)loaded, any previous version stays: %s", err)
        self.errors[f] = err

    def _forget_error(self, f: Path) -> None:
        self.errors.pop(f, None)
        self._failed.pop(f, None)

    async def watch(self, interval_s: float = 2.0) -> None:
        """Run :meth:`refresh` in a worker thread every ``interval_s`` until cancelled.

        Args:
            interval_s: seconds between two checks.
        """
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.refresh)
