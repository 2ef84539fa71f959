"""Environment configuration: YAML layers merged with OmegaConf, validated once into pydantic.

Layers, later wins: ``base.yml`` < ``<env>.yml`` < the site file named by ``CLUSTERING_CONFIG``
(optional; a deployment's own settings, such as alert channels, without editing the package) <
overrides (a nested mapping, e.g. from the ``cluster`` command's options). Values may use
OmegaConf interpolation: ``${oc.env:VAR,default}`` for the environment and
``${paths.raw_dir}``-style references to other keys; ``${env}`` is the environment name.
Relative paths are resolved against the project root.

``${oc.env:…}`` reads the process environment over ``.env.<env>`` over ``.env`` in the project
root; loading never writes ``os.environ``. Commands that start Dagster processes call
:func:`apply_env_files`, so the alert senders and the instance find secrets kept in those files.

There is no per-job layer: the six jobs run the same stages with the same settings, and a
change for one run goes in its run config (the Launchpad, or ``ops:`` config).
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit

import yaml
from dotenv import dotenv_values
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from clustering.core.errors import ConfigError
from clustering.core.params import PipelineParams

Environment = Literal["dev", "staging", "prod"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[1] / "dagster" / "resources" / "configs"

_ROOT_KEY = "project_root"

SITE_CONFIG_VAR = "CLUSTERING_CONFIG"
"""Environment variable naming an optional YAML file layered over the packaged configuration."""


# --- field types ---------------------------------------------------------------------------


def _not_empty(value: object) -> object:
    # An environment variable set to "" would otherwise become Path("."), i.e. the project root.
    if isinstance(value, str) and not value.strip():
        raise PydanticCustomError("empty_path", "must not be empty")
    return value


def _root(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, dict) else {}
    root = context.get(_ROOT_KEY)
    return root if isinstance(root, Path) else Path.cwd()


def _path_under_root(value: Path, info: ValidationInfo) -> Path:
    path = value.expanduser()
    return path if path.is_absolute() else _root(info) / path


def _pattern_under_root(value: str, info: ValidationInfo) -> str:
    if "://" in value:  # e.g. s3://bucket/sales/*.parquet: Path() would fold the "//"
        return value
    # A file, folder or glob; Path() also folds the "//" left by "${paths.raw_dir}/" joins.
    return str(_path_under_root(Path(value), info))


def _env_var_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise PydanticCustomError(
            "env_var_name",
            "must be the name of an environment variable holding the secret, not the secret",
        )
    return value


def _comma_separated(value: object) -> object:
    # Lets a single environment variable carry several addresses: "a@x.com, b@y.com".
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


ProjectPath = Annotated[Path, BeforeValidator(_not_empty), AfterValidator(_path_under_root)]
"""A path; relative ones are resolved against the project root."""

ProjectPattern = Annotated[str, BeforeValidator(_not_empty), AfterValidator(_pattern_under_root)]
"""A file, folder or glob; relative ones are resolved against the project root."""

EnvVarName = Annotated[str, AfterValidator(_env_var_name)]
"""The NAME of an environment variable that holds a secret; never the secret itself."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- models --------------------------------------------------------------------------------


class PathsConfig(_Config):
    """Where inputs are read from and outputs written to (absolute after loading)."""

    raw_dir: ProjectPath
    internal_sales: ProjectPattern
    need_states: ProjectPattern
    external: list[ProjectPattern] = Field(min_length=1)
    outputs_dir: ProjectPath
    duckdb_path: ProjectPath
    exports_dir: ProjectPath
    logs_dir: ProjectPath
    # Stores pinned to a final cluster by hand (STORE_NBR, CATEGORY, CLUSTER, REASON); a
    # missing file means no overrides.
    overrides: ProjectPath | None = None


class InputsConfig(_Config):
    """Optional SQL engine for the inputs.

    ``backend_url`` is a URL Ibis connects to (e.g. ``postgres://user@host/db``); when it is set,
    each input with a table name here is read from that engine and the others from their files
    in :class:`PathsConfig`. ``None`` means every input is a file read through DuckDB.
    """

    # repr=False: the URL may carry a password; describe_sources() prints it masked.
    backend_url: str | None = Field(None, repr=False)
    internal_sales_table: str | None = None
    need_states_table: str | None = None
    external_tables: list[str] = Field(default_factory=list)
    # Memory DuckDB may use while aggregating file inputs; beyond it, it spills to disk.
    duckdb_memory_limit: Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*[KMGT]i?B\s*$")] = "512MB"


class LoggingConfig(_Config):
    """Log level and optional log file of the pipeline's logger."""

    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)]
    file: ProjectPath | None = None


_CHANNEL_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # type: (required fields, optional fields)
    "log": (set(), set()),
    "slack": ({"webhook_url_env"}, set()),
    "email": (
        {"smtp_host", "sender", "recipients"},
        {"smtp_port", "smtp_starttls", "username_env", "password_env"},
    ),
    "webhook": ({"url_env"}, set()),
}


class AlertChannel(_Config):
    """One place alerts go. Secrets are given as names of environment variables only."""

    type: Literal["log", "slack", "email", "webhook"]
    webhook_url_env: EnvVarName | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = True
    username_env: EnvVarName | None = None
    password_env: EnvVarName | None = None
    sender: str | None = None
    recipients: Annotated[list[str], BeforeValidator(_comma_separated)] = Field(
        default_factory=list
    )
    url_env: EnvVarName | None = None

    @model_validator(mode="after")
    def _fields_match_type(self) -> AlertChannel:
        required, optional = _CHANNEL_FIELDS[self.type]
        given = {name for name in self.model_fields_set if name != "type"}
        # Empty values count as missing so "${oc.env:VAR,''}" cannot pass as configured.
        present = {name for name in given if getattr(self, name) not in (None, "", [])}
        stray = sorted(given - required - optional)
        if stray:
            raise PydanticCustomError(
                "channel_field", f"{self.type} channel does not use {_and_join(stray)}"
            )
        missing = sorted(required - present)
        if missing:
            raise PydanticCustomError(
                "channel_field", f"{self.type} channel needs {_and_join(missing)}"
            )
        if (self.username_env is None) != (self.password_env is None):
            raise PydanticCustomError(
                "channel_field",
                "email channel needs both username_env and password_env, or neither",
            )
        return self


def _and_join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


class AlertsConfig(_Config):
    """Run-failure and check alerts."""

    enabled: bool
    channels: list[AlertChannel]
    min_severity: Literal["warning", "error"]
    ui_base_url: str = Field(description="Dagster UI address for links in alerts; '' for none.")

    @model_validator(mode="after")
    def _some_channel_when_enabled(self) -> AlertsConfig:
        if self.enabled and not self.channels:
            raise PydanticCustomError("no_channel", "alerts are enabled but no channel is given")
        return self


class ScheduleConfig(_Config):
    """Whether schedules start running when the definitions are loaded."""

    running_by_default: bool


class DaskConfig(_Config):
    """Where the dask executor runs steps (``dagster.executor: dask``)."""

    # A running scheduler (tcp://host:8786); None starts a local cluster for each run.
    scheduler_address: str | None = None
    local_workers: int = Field(2, ge=1)


class DagsterConfig(_Config):
    """Orchestration settings that differ per environment."""

    executor: Literal["multiprocess", "in_process", "dask"] = "multiprocess"
    # Per-category work inside a step already uses every core; more steps would compete.
    max_concurrent_steps: int = Field(2, ge=1)
    dask: DaskConfig = DaskConfig()
    # Instance storage when DAGSTER_HOME is not set (see clustering.infra.instance).
    instance: Literal["sqlite", "postgres"] = "sqlite"
    schedules: ScheduleConfig


class AppConfig(_Config):
    """The whole configuration of one environment (and optionally one job and one run)."""

    env: Environment
    paths: PathsConfig
    inputs: InputsConfig
    logging: LoggingConfig
    alerts: AlertsConfig
    dagster: DagsterConfig
    params: PipelineParams = PipelineParams()

    def describe_sources(self) -> str:
        """One line per input saying where it is read from (passwords in URLs masked)."""
        url = self.inputs.backend_url
        engine = redact_url(url) if url else None

        def where(table: str | None, files: str) -> str:
            return f"table {table} via {engine}" if engine and table else files

        lines = [
            f"internal sales: {where(self.inputs.internal_sales_table, self.paths.internal_sales)}",
            f"need states: {where(self.inputs.need_states_table, self.paths.need_states)}",
        ]
        if engine and self.inputs.external_tables:
            lines += [f"external: table {t} via {engine}" for t in self.inputs.external_tables]
        else:
            lines += [f"external: {files}" for files in self.paths.external]
        return "\n".join(lines)


def redact_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    parts = urlsplit(url)
    redacted = url
    if parts.password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        redacted = redacted.replace(parts.netloc, f"{userinfo.split(':', 1)[0]}:***@{host}", 1)
    secret_key = re.compile(r"(?i)pass|secret|token|key")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(secret_key.search(key) for key, _ in pairs):
        query = urlencode([(k, "***" if secret_key.search(k) else v) for k, v in pairs], safe="*")
        redacted = redacted.replace(f"?{parts.query}", f"?{query}", 1)
    # Rebuilt by replacement, not urlunsplit, which would turn "duckdb:///x" into "duckdb:/x".
    return redacted


# --- loading -------------------------------------------------------------------------------


def load_config(
    env: str,
    overrides: Mapping[str, object] | None = None,
    *,
    project_root: Path | None = None,
    config_dir: Path | None = None,
) -> AppConfig:
    """Load, merge, resolve and validate the configuration of ``env``.

    ``overrides`` is a nested mapping applied last. Relative paths are resolved against
    ``project_root`` (default: the working directory), whose ``.env`` and ``.env.<env>`` fill in
    environment variables the process does not set. Every problem ends in a
    :class:`ConfigError` with one sentence naming the key.
    """
    if env not in ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment '{env}'; expected one of: {', '.join(ENVIRONMENTS)}."
        )
    root = (project_root if project_root is not None else Path.cwd()).resolve()
    folder = config_dir if config_dir is not None else DEFAULT_CONFIG_DIR
    environ = {**env_file_values(root, env), **os.environ}

    layers: list[tuple[str, Mapping[str, object]]] = [
        ("base.yml", _read_yaml(folder, "base.yml")),
        (f"{env}.yml", _read_yaml(folder, f"{env}.yml")),
    ]
    site = _site_file(root, environ)  # after the .env files: they may name it
    if site is not None:
        layers.append((f"{SITE_CONFIG_VAR}={site.name}", _read_yaml(site.parent, site.name)))
    if overrides:
        layers.append(("overrides", overrides))
    source = f"config for env '{env}' ({' < '.join(name for name, _ in layers)})"

    with _environment(environ):
        resolved = _merge_and_resolve(env, layers, source)
    try:
        return AppConfig.model_validate(resolved, context={_ROOT_KEY: root})
    except ValidationError as exc:
        # Same sentence shape as clustering.core.params.parse_params.
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"]) or "(top level)"
        problem = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{source}: {path}: {problem}.") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _site_file(root: Path, environ: Mapping[str, str]) -> Path | None:
    """The file ``$CLUSTERING_CONFIG`` names (relative to ``root``), or None when unset."""
    value = environ.get(SITE_CONFIG_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ConfigError(
            f"{SITE_CONFIG_VAR} names '{value}', which is not a file; "
            "point it at a YAML file of configuration keys or unset it."
        )
    return path


def _read_yaml(folder: Path, name: str) -> Mapping[str, object]:
    path = folder / name
    if not path.is_file():
        raise ConfigError(f"config file '{name}' is missing from '{folder}'.")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ConfigError(f"config file '{name}' cannot be parsed: {problem}.") from None
    if data is None:  # comments only
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{name}' must hold a mapping of keys.")
    if "env" in data:
        raise ConfigError(
            f"config file '{name}': env: unknown key (the environment is chosen by name, "
            "not set in a file)."
        )
    return data


def _merge_and_resolve(
    env: str, layers: list[tuple[str, Mapping[str, object]]], source: str
) -> dict[str, object]:
    try:
        # env first, so it leads the document and ${env} works in every file.
        configs = [OmegaConf.create({"env": env})]
        configs += [OmegaConf.create(_plain_mapping(data)) for _, data in layers]
        merged = OmegaConf.merge(*configs)
        merged.env = env  # an override cannot switch environments
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: {_key_of(exc)}: {_first_line(exc)}.") from None
    try:
        resolved = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except InterpolationResolutionError as exc:
        variable = re.search(r"Environment variable '([^']+)' not found", str(exc))
        if variable is None:
            raise ConfigError(f"{source}: {_key_of(exc)}: {_first_line(exc)}.") from None
        name = variable.group(1)
        key = _key_needing(merged, name) or _key_of(exc)
        raise ConfigError(
            f"config for env '{env}': environment variable {name} is not set (needed by {key})."
        ) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: {_key_of(exc)}: {_first_line(exc)}.") from None
    assert isinstance(resolved, dict)
    return {str(key): value for key, value in resolved.items()}


def _plain_mapping(data: Mapping[Any, object]) -> dict[Any, object]:
    return {key: _plain(child) for key, child in data.items()}


def _plain(value: object) -> object:
    # Run config may arrive as read-only mappings or tuples; OmegaConf wants dicts and lists.
    if isinstance(value, Mapping):
        return _plain_mapping(value)
    if isinstance(value, list | tuple):
        return [_plain(child) for child in value]
    return value


def _key_of(exc: OmegaConfBaseException) -> str:
    return str(getattr(exc, "full_key", None) or "(top level)")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__


def _key_needing(config: object, variable: str) -> str | None:
    """First key (document order) whose own value reads ``variable`` without a default.

    OmegaConf reports the key being resolved, which may only refer to the one that needs the
    variable (``duckdb_path: ${paths.outputs_dir}/…``); the user must be told the latter.
    """
    pattern = re.compile(r"\$\{\s*oc\.env\s*:\s*['\"]?" + re.escape(variable) + r"['\"]?\s*\}")

    def walk(node: object, prefix: str) -> str | None:
        items: list[tuple[object, object]]
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            return prefix if isinstance(node, str) and pattern.search(node) else None
        for key, child in items:
            found = walk(child, f"{prefix}.{key}" if prefix else str(key))
            if found:
                return found
        return None

    return walk(OmegaConf.to_container(config, resolve=False), "")


# --- environment variables and .env files ----------------------------------------------------

_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "clustering_config_environ", default=None
)
_NO_DEFAULT = object()


def _env_resolver(name: str, default: object = _NO_DEFAULT) -> object:
    """``${oc.env:NAME,default}`` against the mapping being loaded (see :func:`load_config`)."""
    environ = _ENVIRON.get()
    source = os.environ if environ is None else environ
    if name in source:
        return source[name]
    if default is not _NO_DEFAULT:
        return default
    # OmegaConf wraps this; the message is what _merge_and_resolve looks for.
    raise KeyError(f"Environment variable '{name}' not found")


@contextmanager
def _environment(environ: Mapping[str, str]) -> Iterator[None]:
    OmegaConf.register_resolver("oc.env", _env_resolver, replace=True)
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def env_file_values(root: Path, env: str) -> dict[str, str]:
    """``root``'s ``.env`` overlaid by ``.env.<env>`` (missing files are simply empty)."""
    values: dict[str, str] = {}
    for name in (".env", f".env.{env}"):
        path = root / name
        if path.is_file():
            values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    return values


# Keys apply_env_files wrote into os.environ, with the value written.
_dotenv_written: dict[str, str] = {}
_dotenv_lock = threading.Lock()


def apply_env_files(root: Path, env: str) -> None:
    """Put ``.env`` then ``.env.<env>`` values into ``os.environ`` where the real one is unset.

    Called by the commands that start Dagster processes (``run``, ``ui``, ``daemon``, …), never
    on import: the alert senders, Dagster's ``EnvVar`` and the instance read secrets from the
    process environment by name. ``.env.<env>`` wins over ``.env``; a variable set in the real
    environment wins over both. Values written by an earlier call (say for staging) are
    replaced or removed on the next (say for prod), so one process never mixes environments.
    """
    values = env_file_values(root, env)
    with _dotenv_lock:
        for key, written in list(_dotenv_written.items()):
            if os.environ.get(key) != written:
                del _dotenv_written[key]  # changed by someone else since: no longer ours
            elif key not in values:
                del os.environ[key]
                del _dotenv_written[key]
        for key, value in values.items():
            if key in os.environ and key not in _dotenv_written:
                continue
            os.environ[key] = value
            _dotenv_written[key] = value
