"""leadflow's settings: one pydantic-settings class, the only place a LEADFLOW_* variable is
read. `Settings.from_env()` reads the environment (or a mapping given instead); `Settings(...)`
takes values alone, as tests and tools build them. Temporal's own variables (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_TLS_*, TEMPORAL_API_KEY, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE)
are read by temporalio's envconfig, exactly as the `temporal` CLI reads them."""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from temporalio.envconfig import ClientConfig

from leadflow.codec.keys import CodecKeysInvalid, Keyring
from leadflow.codec.keys import load as load_keys
from rules.durations import parse_duration

if TYPE_CHECKING:
    from leadflow.delivery.dkim_sign import DkimSigner

TLS_MODES = ("none", "starttls", "tls")
MIN_SECRET = 32  # characters of LEADFLOW_SECRET
MIN_RETENTION = 86400.0  # seconds: LEADFLOW_RETENTION_* below a day are refused


def derive(root: str, use: str) -> str:
    """A key for one use from a root secret (HMAC-SHA256, as HKDF's expand step with one block)."""
    return hmac.new(root.encode(), f"leadflow/{use}".encode(), hashlib.sha256).hexdigest()


class SettingsError(ValueError):
    """A setting with a value leadflow cannot use; says which and why."""


# The variables from_env reads: the environment, or a mapping given instead. Settings(...) built
# directly reads none (an empty mapping), so a test's values are the whole story.
_ENV: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("leadflow_env", default=None)
Listed = Annotated[tuple[str, ...], NoDecode]  # comma-separated in the environment


def _env(name: str, default: Any = None) -> Any:
    """A field read from LEADFLOW_<name>, also settable by its own name."""
    return Field(default, validation_alias=f"LEADFLOW_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", frozen=True, populate_by_name=True,
                                      env_ignore_empty=True, extra="ignore")

    home: Path = Path(".leadflow")
    policy_dir: Path = Path("policies")
    content_dir_setting: Path | None = _env("CONTENT_DIR")  # see content_dir
    policy: str = "lead-lifecycle"
    task_queue: str = "leadflow"
    policy_poll_seconds: float = 5.0
    dev_port: int = 7233
    ui_port: int = 8233
    eval_processes: int = 2  # evaluator processes per worker; 0 evaluates in the worker itself
    eval_deadline: float = Field(5.0, validation_alias="LEADFLOW_EVAL_DEADLINE_SECONDS")  # per event
    http: str = "127.0.0.1:8000"  # where `leadflow serve` (and `make up`) listen
    api_keys: str = ""  # role:key,role:person:key
    api_keys_file: str = ""
    max_body: int = Field(5 * 1024 * 1024, validation_alias="LEADFLOW_HTTP_MAX_BODY")  # bytes of a body
    database_url: str = ""  # the shared database; empty: SQLite under home
    secret: str = ""  # the root of the keys that sign links and sessions; see keys_for
    old_secrets: Listed = ()  # earlier roots, still accepted for checking
    public_url: str = ""  # where people reach the API (links in e-mail); empty: http://<http>
    smtp_host: str = ""  # empty: e-mail is recorded as skipped, not sent
    smtp_port: int = 0
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_tls: str = "none"
    mail_from: str = "leadflow <leadflow@localhost>"
    # DKIM signing of nurture e-mail: all three or none (leadflow.delivery.dkim_sign)
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key: str = ""  # a file: the RSA private key, PEM
    handoff_webhook_url: str = ""
    # per queue, "*" for the rest; a JSON object in the environment
    handoff_webhook_urls: Annotated[dict[str, str], NoDecode] = {}
    webhook_secret: str = ""  # signs the hand-off webhooks leadflow sends
    crm_secret: str = ""  # checks the CRM's signed answers (leadflow.crm_auth)
    delivery_timeout: float = Field(10.0, validation_alias="LEADFLOW_DELIVERY_TIMEOUT_SECONDS")
    # e-mail processes per worker (render, links, message, SMTP; leadflow.delivery.pool); 0 sends
    # from the worker itself
    delivery_processes: int = 2
    machine_networks: Listed = ()  # more fetcher networks than leadflow.delivery.machines knows
    machine_open_seconds: float = 2.0
    machine_click_seconds: float = 10.0
    final_retention: float = 30 * 86400.0  # a lead in a final state keeps its run; a duration
    codec_keys: str = ""  # empty: a key made once under home (leadflow.codec.keys)
    codec_origins_setting: Listed = _env("CODEC_CORS_ORIGINS", ())  # see codec_origins
    roster_setting: Path | None = _env("ROSTER")  # see roster_file
    forms_setting: Path | None = _env("FORMS_DIR")  # see forms_dir
    # the web origins whose pages may run /c.js and post to /v1/collect and /f/{form}
    sites: Listed = ()
    anonymous_retention: float = 30 * 86400.0  # a visitor nobody has named yet keeps its views; a duration
    # how long the event archive and the ended deliveries are kept (leadflow.operations.pruning);
    # None: for good
    retention_events: float | None = None
    retention_deliveries: float | None = None
    collect_rate: float = 50.0  # /v1/collect calls a second from one client address (bursts of twice that)
    # where this process serves Prometheus metrics (the worker's, and `make up`'s one process);
    # empty: none. The API serves its own at /metrics on LEADFLOW_HTTP.
    metrics_addr: str = "127.0.0.1:9464"
    log_format: str = ""  # json or text; empty: text at a terminal, else JSON (leadflow.ops.logs)
    log_level: str = ""  # debug, info, warning, error; empty: warning at a terminal, else info
    user: str = ""  # who runs the CLI's policy and roster changes; empty: the operating-system user
    connect: dict[str, Any] = Field({}, exclude=True)  # Temporal's, from its envconfig

    @field_validator("content_dir_setting", "roster_setting", "forms_setting", mode="before")
    @classmethod
    def _no_path(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("old_secrets", "machine_networks", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @field_validator("codec_origins_setting", "sites", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        origins = tuple(v.strip().rstrip("/").lower() for v in value.split(",") if v.strip())
        for origin in origins:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest:
                raise ValueError(f"{origin!r} is not a web origin: scheme and host, as a browser sends "
                                 "it in Origin (e.g. https://www.example.com or http://localhost:8080)")
        return origins

    @field_validator("smtp_tls", mode="before")
    @classmethod
    def _tls(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("metrics_addr", "handoff_webhook_url", mode="before")
    @classmethod
    def _stripped(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("final_retention", "anonymous_retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value.strip()) if isinstance(value, str) else value

    @field_validator("retention_events", "retention_deliveries", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        # 0 is refused rather than read as "off": LEADFLOW_FINAL_RETENTION=0s means "at once",
        # and a retention under a day is a typo more often than a wish (it would also prune a
        # delivery's row while Temporal may still retry its activity)
        seconds = parse_duration(value.strip()) if isinstance(value, str) else value
        if seconds is not None and seconds < MIN_RETENTION:
            raise ValueError("a duration of a day or more (e.g. 400d); leave it unset to keep everything")
        return seconds

    @field_validator("handoff_webhook_urls", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError('a JSON object of queue to URL, e.g. {"account-executives": '
                             '"https://crm.example/hooks/ae", "*": "https://crm.example/hooks/all"}')
        return {str(k): v.strip() for k, v in value.items()}

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _MappingEnv(settings_cls)

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
    def forms_dir(self) -> Path:
        """Marketing's forms: LEADFLOW_FORMS_DIR, else forms/ beside the policies."""
        return self.forms_setting or self.policy_dir.resolve().parent / "forms"

    @property
    def shared_db_url(self) -> str:
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

    def dkim(self) -> DkimSigner | None:
        """The DKIM signer, its key read and tried now (at start), or None when none is set."""
        from leadflow.delivery.dkim_sign import DkimKeyError, load

        try:
            return load(self.dkim_selector, self.dkim_domain, self.dkim_key)
        except DkimKeyError as err:
            raise SettingsError(str(err)) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment (or `env`, a mapping in its place) gives; SettingsError
        names the variable and says what it takes."""
        given = dict(os.environ if env is None else env)
        connect = dict(ClientConfig.load_client_connect_config(override_env_vars=given))
        token = _ENV.set(given)
        try:
            return cls(connect=connect)
        except ValidationError as err:
            first = err.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            variable = name if name.startswith("LEADFLOW_") else f"LEADFLOW_{name.upper()}"
            raw = given.get(variable, "")
            message = str(first["msg"]).removeprefix("Value error, ")
            raise SettingsError(f"{variable}={raw!r}: {message}") from None
        finally:
            _ENV.reset(token)


class _MappingEnv(EnvSettingsSource):
    """The environment source, over the mapping from_env was given rather than os.environ."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in (_ENV.get() or {}).items()
                if name.startswith("LEADFLOW_") and not (self.env_ignore_empty and value.strip() == "")}
