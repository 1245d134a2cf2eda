"""leadflow's settings, from the environment. Temporal's own variables (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_TLS_*, TEMPORAL_API_KEY, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE)
are read by temporalio's envconfig, exactly as the `temporal` CLI reads them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.envconfig import ClientConfig


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
    def outbox_path(self) -> Path:
        return self.home / "outbox.sqlite"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        connect = dict(ClientConfig.load_client_connect_config(override_env_vars=env))
        return cls(
            home=Path(env.get("LEADFLOW_HOME", ".leadflow")),
            policy_dir=Path(env.get("LEADFLOW_POLICY_DIR", "policies")),
            content_dir_setting=_path(env.get("LEADFLOW_CONTENT_DIR")),
            policy=env.get("LEADFLOW_POLICY", "lead-lifecycle"),
            task_queue=env.get("LEADFLOW_TASK_QUEUE", "leadflow"),
            policy_poll_seconds=float(env.get("LEADFLOW_POLICY_POLL_SECONDS", "5")),
            dev_port=int(env.get("LEADFLOW_DEV_PORT", "7233")),
            ui_port=int(env.get("LEADFLOW_UI_PORT", "8233")),
            eval_processes=int(env.get("LEADFLOW_EVAL_PROCESSES", "2")),
            eval_deadline=float(env.get("LEADFLOW_EVAL_DEADLINE_SECONDS", "5")),
            http=env.get("LEADFLOW_HTTP", "127.0.0.1:8000"),
            api_keys=env.get("LEADFLOW_API_KEYS", ""),
            api_keys_file=env.get("LEADFLOW_API_KEYS_FILE", ""),
            max_body=int(env.get("LEADFLOW_HTTP_MAX_BODY", str(5 * 1024 * 1024))),
            connect=connect,
        )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
