"""Secret values, kept out of everything tunesmith stores, logs, prints or sends to a model.

Why a registry of *values* rather than a list of places: a key leaks through whatever text happens to
contain it (a server that echoes the Authorization header into its reply, an objective that prints its
environment to stderr, a URL with ``user:password@`` in an error message). Scrubbing the known values at
the few doors out of the process (storage writes, model requests, terminal and log output) catches them
all, wherever they came from.

The known values are:

* every value registered with :func:`register` (the API key a model client uses) or
  :func:`register_url_credentials` (the password of a ``http://user:password@host`` URL, also in its
  Basic-authorization form);
* the value of every environment variable whose name looks secret (:func:`is_secret_name`:
  ``*_API_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``), read when scrubbing, so a variable set later
  is covered too.

Values shorter than :data:`MIN_SECRET_LENGTH` characters are not scrubbed: replacing ``"1"`` everywhere
would destroy the text and protect nothing.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, overload
from urllib.parse import unquote, urlsplit, urlunsplit

#: What a scrubbed value is replaced with.
REDACTED = "***"
#: Shorter values are not treated as secrets.
MIN_SECRET_LENGTH = 6

_SECRET_NAME = re.compile(r"(_API_KEY$|^API_KEY$|_TOKEN$|^TOKEN$|SECRET|PASSWORD|PASSWD)", re.IGNORECASE)
_CREDENTIAL_NAME = re.compile(
    r"^(AWS|AZURE|ARM|GOOGLE|GCLOUD|CLOUDSDK|GCP|GCE|DIGITALOCEAN|OCI_CLI|ALIBABA_CLOUD|ALICLOUD|IBMCLOUD|VAULT)_"
    r"|CREDENTIAL"
    r"|^(KUBECONFIG|SSH_AUTH_SOCK|SSH_AGENT_PID|SSH_ASKPASS|GIT_ASKPASS|GPG_AGENT_INFO|DOCKER_HOST|DOCKER_CONFIG"
    r"|DOCKER_CERT_PATH|NETRC|XDG_RUNTIME_DIR|DBUS_SESSION_BUS_ADDRESS)$",
    re.IGNORECASE,
)
_lock = threading.Lock()
_registered: set[str] = set()


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret (``OPENAI_API_KEY``, ``HF_TOKEN``...)."""
    return bool(_SECRET_NAME.search(name))


def is_credential_name(name: str) -> bool:
    """Whether a variable opens the user's accounts without holding a secret in its value: a cloud account
    (``AWS_PROFILE``, ``GOOGLE_APPLICATION_CREDENTIALS``), a cluster (``KUBECONFIG``), an agent or a session
    socket (``SSH_AUTH_SOCK``, ``DOCKER_HOST``). Generated code gets none of them: a file name or a socket is
    as good as the key it leads to.
    """
    return bool(_CREDENTIAL_NAME.search(name))


def register(value: str | None) -> None:
    """Treat ``value`` (an API key, a password) as secret from now on, in this process."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value)


def register_url_credentials(url: str) -> None:
    """Register the password of ``scheme://user:password@host/...`` in every form it may be echoed in.

    A server or proxy that echoes its request shows the credential as sent: percent-decoded, or as
    ``Basic base64(user:password)``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password is None:
        return
    password = unquote(parts.password)
    user = unquote(parts.username or "")
    register(parts.password)
    register(password)
    register(base64.b64encode(f"{user}:{password}".encode()).decode())


def without_credentials(url: str) -> str:
    """``url`` with its password replaced by :data:`REDACTED` (the user name stays, it helps to debug)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:{REDACTED}@{netloc}", parts.path, parts.query, parts.fragment))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every known secret value, longest first (so a key is scrubbed whole before any part of it)."""
    env = os.environ if environ is None else environ
    with _lock:
        values = set(_registered)
    values.update(v for k, v in env.items() if len(v) >= MIN_SECRET_LENGTH and is_secret_name(k))
    return sorted(values, key=len, reverse=True)


@overload
def redact(text: str) -> str: ...
@overload
def redact(text: str | None) -> str | None: ...
def redact(text: str | None) -> str | None:
    """``text`` with every known secret value replaced by :data:`REDACTED` (None stays None)."""
    if not text:
        return text
    for value in secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` (dicts, lists, strings) with every string redacted."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        return {key: redact_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(value) for value in data]
    return data


def objective_environment(pass_env: Iterable[str] = (), extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment an objective runs with: ours without the secrets, plus ``extra``.

    Variables with secret-looking names and any variable holding a registered value (the model's key,
    whatever its name) are left out unless named in ``pass_env``: an objective has no business with the
    model's key, and what it prints lands in the study and in the model's prompt.
    """
    allowed = set(pass_env)
    with _lock:
        registered = set(_registered)
    env = {
        name: value
        for name, value in os.environ.items()
        if name in allowed or not (is_secret_name(name) or value in registered)
    }
    env.update(extra or {})
    return env


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from each record's message before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as it would
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
