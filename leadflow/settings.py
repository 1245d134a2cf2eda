"""leadflow's settings, from the environment. Temporal's own variables (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_TLS_*, TEMPORAL_API_KEY, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE)
are read by temporalio's envconfig, exactly as the `temporal` CLI reads them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.envconfig import ClientConfig

from leadflow.codec.keys import CodecKeysInvalid, Keyring
from leadflow.codec.keys import load as load_keys
from rules.durations import parse_duration

TLS_MODES = ("none", "starttls", "tls")
MIN_SECRET = 32  # characters of LEADFLOW_SECRET


def derive(root: str, use: str) -> str:
    """A key for one use from a root secret (HMAC-SHA256, as HKDF's expand step with one block)."""
    return hmac.new(root.encode(), f"leadflow/{use}".encode(), hashlib.sha256).hexdigest()


class SettingsError(ValueError):
    """A setting with a value leadflow cannot use; says which and why."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".leadflow")
    policy_dir: Path = Path("policies")
    content_dir_setting: Path | None = None  # LEADFLOW_CONTENT_DIR; see content_dir
    policy: str = "lead-lifecycle"
    task_queue: str = "leadflow"
    policy_poll_seconds: float = 5.0
    dev_port: int = 7233
    ui_port: int = 8233
    eval_processes: int = 2  # evaluator processes per worker; 0 evaluates in the worker itself
    eval_deadline: float = 5.0  # seconds one event may take in the rules engine
    http: str = "127.0.0.1:8000"  # where `leadflow serve` (and `make up`) listen
    api_keys: str = ""  # role:key,role:key
    api_keys_file: str = ""
    max_body: int = 5 * 1024 * 1024  # bytes of one request body
    # delivery
    database_url: str = ""  # the ledger; empty: SQLite under home
    secret: str = ""  # LEADFLOW_SECRET: the root of the keys that sign links and sessions; see keys_for
    old_secrets: tuple[str, ...] = ()  # LEADFLOW_OLD_SECRETS: earlier roots, still accepted for checking
    public_url: str = ""  # where people reach the API (links in e-mail); empty: http://<http>
    smtp_host: str = ""  # empty: e-mail is recorded as skipped, not sent
    smtp_port: int = 0
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_tls: str = "none"
    mail_from: str = "leadflow <leadflow@localhost>"
    handoff_webhook_url: str = ""
    handoff_webhook_urls: dict[str, str] = field(default_factory=dict)  # per queue
    webhook_secret: str = ""  # signs the hand-off webhooks leadflow sends
    crm_secret: str = ""  # LEADFLOW_CRM_SECRET: checks the CRM's signed answers (leadflow.crm_auth)
    delivery_timeout: float = 10.0  # seconds one SMTP or HTTP exchange may take
    machine_networks: tuple[str, ...] = ()  # more fetcher networks than leadflow.delivery.machines knows
    machine_open_seconds: float = 2.0
    machine_click_seconds: float = 10.0
    final_retention: float = 30 * 86400.0  # LEADFLOW_FINAL_RETENTION: a lead in a final state keeps its run
    codec_keys: str = ""  # LEADFLOW_CODEC_KEYS; empty: a key made once under home (codec.keys)
    codec_origins_setting: tuple[str, ...] = ()  # LEADFLOW_CODEC_CORS_ORIGINS; see codec_origins
    roster_setting: Path | None = None  # LEADFLOW_ROSTER; see roster_file
    # where this process serves Prometheus metrics (the worker's, and `make up`'s one process);
    # empty: none. The API serves its own at /metrics on LEADFLOW_HTTP.
    metrics_addr: str = ""
    connect: dict[str, Any] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        """No Temporal address configured: run (or reach) the embedded dev server."""
        return not self.connect.get("target_host")

    @property
    def namespace(self) -> str:
        return self.connect.get("namespace") or "default"

    @property
    def listen(self) -> tuple[str, int]:
        host, _, port = self.http.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def content_dir(self) -> Path:
        """Marketing's templates: LEADFLOW_CONTENT_DIR, else content/ beside the policies."""
        return self.content_dir_setting or self.policy_dir.resolve().parent / "content"

    @property
    def roster_file(self) -> Path:
        """Sales' roster: LEADFLOW_ROSTER, else roster.yaml beside the policy files."""
        return self.roster_setting or self.policy_dir / "roster.yaml"

    @property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'leadflow.sqlite').resolve()}"

    @property
    def public(self) -> str:
        host, port = self.listen
        return (self.public_url or f"http://{host}:{port}").rstrip("/")

    @property
    def mail_dir(self) -> Path:
        """Where `make up`'s local SMTP sink keeps what arrives."""
        return self.home / "mail"

    @property
    def codec_origins(self) -> tuple[str, ...]:
        """Web origins allowed to call /codec from a browser: the Temporal Web UI's."""
        return self.codec_origins_setting or (f"http://localhost:{self.ui_port}",
                                              f"http://127.0.0.1:{self.ui_port}")

    def keyring(self) -> tuple[Keyring, str]:
        """The payload codec's keys and where they came from (see codec.keys)."""
        try:
            return load_keys(self.codec_keys, self.home)
        except CodecKeysInvalid as err:
            raise SettingsError(str(err)) from None

    def webhook_for(self, queue: str) -> str:
        return self.handoff_webhook_urls.get(queue) or self.handoff_webhook_urls.get("*") \
            or self.handoff_webhook_url

    def key_for(self, use: str) -> str:
        """The key for one use (`links`, `session`, `page-tokens`), derived from LEADFLOW_SECRET:
        an e-mail link held by every recipient and a page session never share a key."""
        return derive(self.signing_secret(), use)

    def keys_for(self, use: str) -> tuple[str, ...]:
        """The key for `use` first, then those of LEADFLOW_OLD_SECRETS: what was signed before a
        rotation (an unsubscribe link in a mail sent last year) still checks."""
        return (self.key_for(use), *(derive(old, use) for old in self.old_secrets))

    def check_secret(self) -> str | None:
        """A warning to log for LEADFLOW_SECRET, or None; refused (SettingsError) outside the
        embedded setup, where workers and APIs on other machines must share it: a secret made
        on one machine signs links that another machine's API refuses."""
        if self.secret and len(self.secret) >= MIN_SECRET:
            return None
        problem = (f"LEADFLOW_SECRET is {len(self.secret)} characters; use {MIN_SECRET} or more (e.g. "
                   "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)" if self.secret else
                   "LEADFLOW_SECRET is not set: using one made on this machine "
                   f"({self.home / 'session-secret'}); links signed here fail on an API elsewhere")
        if not self.embedded:
            raise SettingsError(problem + "; it is required with a Temporal address (TEMPORAL_ADDRESS)")
        return problem

    def signing_secret(self) -> str:
        """LEADFLOW_SECRET, else a key made once under LEADFLOW_HOME (the embedded setup only;
        check_secret). The root: each use signs with a key derived from it (key_for)."""
        if self.secret:
            return self.secret
        path = self.home / "session-secret"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()

    def check_crm(self) -> None:
        """Refuse a CRM key that is one leadflow signs with: what leadflow sends must never verify
        as the CRM's answer (the API checks it at start, the worker with check_delivery)."""
        if self.crm_secret and self.crm_secret in (self.webhook_secret, self.secret):
            raise SettingsError("LEADFLOW_CRM_SECRET: give the CRM's answers a key of their own, not "
                                "LEADFLOW_WEBHOOK_SECRET or LEADFLOW_SECRET (what leadflow signs must never "
                                "verify as an answer)")

    def check_delivery(self) -> None:
        """Refuse settings that would fail every delivery later, at start."""
        if self.smtp_tls not in TLS_MODES:
            raise SettingsError(f"LEADFLOW_SMTP_TLS={self.smtp_tls!r}: one of {', '.join(TLS_MODES)}")
        hooks = [self.handoff_webhook_url, *self.handoff_webhook_urls.values()]
        for url in filter(None, hooks):
            if not url.startswith(("http://", "https://")):
                raise SettingsError(f"hand-off webhook {url!r}: an http(s) URL")
        self.check_crm()
        if any(hooks) and not self.webhook_secret:
            raise SettingsError("LEADFLOW_WEBHOOK_SECRET: hand-off webhooks are signed with it; set one "
                                "(and give the same to the CRM)")
        if not self.public.startswith(("http://", "https://")):
            raise SettingsError(f"LEADFLOW_PUBLIC_URL={self.public_url!r}: an http(s) URL")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        connect = dict(ClientConfig.load_client_connect_config(override_env_vars=env))
        read = _Reader(env)
        return cls(
            home=Path(env.get("LEADFLOW_HOME", ".leadflow")),
            policy_dir=Path(env.get("LEADFLOW_POLICY_DIR", "policies")),
            content_dir_setting=_path(env.get("LEADFLOW_CONTENT_DIR")),
            roster_setting=_path(env.get("LEADFLOW_ROSTER")),
            metrics_addr=env.get("LEADFLOW_METRICS_ADDR", "127.0.0.1:9464").strip(),
            policy=env.get("LEADFLOW_POLICY", "lead-lifecycle"),
            task_queue=env.get("LEADFLOW_TASK_QUEUE", "leadflow"),
            policy_poll_seconds=read.number("LEADFLOW_POLICY_POLL_SECONDS", 5),
            dev_port=read.integer("LEADFLOW_DEV_PORT", 7233),
            ui_port=read.integer("LEADFLOW_UI_PORT", 8233),
            eval_processes=read.integer("LEADFLOW_EVAL_PROCESSES", 2),
            eval_deadline=read.number("LEADFLOW_EVAL_DEADLINE_SECONDS", 5),
            http=env.get("LEADFLOW_HTTP", "127.0.0.1:8000"),
            api_keys=env.get("LEADFLOW_API_KEYS", ""),
            api_keys_file=env.get("LEADFLOW_API_KEYS_FILE", ""),
            max_body=read.integer("LEADFLOW_HTTP_MAX_BODY", 5 * 1024 * 1024),
            database_url=env.get("LEADFLOW_DATABASE_URL", ""),
            secret=env.get("LEADFLOW_SECRET", ""),
            old_secrets=tuple(o.strip() for o in env.get("LEADFLOW_OLD_SECRETS", "").split(",") if o.strip()),
            crm_secret=env.get("LEADFLOW_CRM_SECRET", ""),
            public_url=env.get("LEADFLOW_PUBLIC_URL", ""),
            smtp_host=env.get("LEADFLOW_SMTP_HOST", ""),
            smtp_port=read.integer("LEADFLOW_SMTP_PORT", 0),
            smtp_user=env.get("LEADFLOW_SMTP_USER", ""),
            smtp_password=env.get("LEADFLOW_SMTP_PASSWORD", ""),
            smtp_tls=env.get("LEADFLOW_SMTP_TLS", "none").strip().lower(),
            mail_from=env.get("LEADFLOW_MAIL_FROM", "leadflow <leadflow@localhost>"),
            handoff_webhook_url=env.get("LEADFLOW_HANDOFF_WEBHOOK_URL", "").strip(),
            handoff_webhook_urls=read.mapping("LEADFLOW_HANDOFF_WEBHOOK_URLS"),
            webhook_secret=env.get("LEADFLOW_WEBHOOK_SECRET", ""),
            delivery_timeout=read.number("LEADFLOW_DELIVERY_TIMEOUT_SECONDS", 10),
            machine_networks=tuple(n.strip() for n in env.get("LEADFLOW_MACHINE_NETWORKS", "").split(",")
                                   if n.strip()),
            machine_open_seconds=read.number("LEADFLOW_MACHINE_OPEN_SECONDS", 2),
            machine_click_seconds=read.number("LEADFLOW_MACHINE_CLICK_SECONDS", 10),
            final_retention=read.duration("LEADFLOW_FINAL_RETENTION", 30 * 86400.0),
            codec_keys=env.get("LEADFLOW_CODEC_KEYS", ""),
            codec_origins_setting=tuple(o.strip().rstrip("/") for o in
                                        env.get("LEADFLOW_CODEC_CORS_ORIGINS", "").split(",") if o.strip()),
            connect=connect,
        )


class _Reader:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def integer(self, name: str, default: int) -> int:
        return int(self._typed(name, default, int, "a whole number"))

    def number(self, name: str, default: float) -> float:
        return self._typed(name, default, float, "a number")

    def _typed(self, name: str, default: float, kind: type[float] | type[int], what: str) -> float:
        raw = self.env.get(name, "").strip()
        try:
            return kind(raw) if raw else default
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: {what}") from None

    def duration(self, name: str, default: float) -> float:
        raw = self.env.get(name, "").strip()
        try:
            return parse_duration(raw) if raw else default
        except ValueError as err:
            raise SettingsError(f"{name}: {err}") from None

    def mapping(self, name: str) -> dict[str, str]:
        raw = self.env.get(name, "").strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise SettingsError(f'{name}: a JSON object of queue to URL, e.g. {{"account-executives": '
                                '"https://crm.example/hooks/ae", "*": "https://crm.example/hooks/all"}')
        return {str(k): v.strip() for k, v in value.items()}


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
