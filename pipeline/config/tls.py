"""TLS and authentication settings shared by network clients and servers.

Client side (exporters: otlp, otlphttp, loki, elasticsearch …):

```yaml
tls:
  insecure: false            # true: plaintext (gRPC); http:// endpoints are plaintext anyway
  insecure_skip_verify: false
  ca_file: /etc/ssl/ca.pem   # trust this CA instead of the system store
  cert_file: client.pem      # client certificate (mutual TLS), with key_file
  key_file: client-key.pem
  min_version: "1.2"
  server_name_override: ""
auth:
  bearer_token: ${env:TOKEN}          # Authorization: Bearer …
  basic: {username: u, password: p}   # Authorization: Basic …
headers: {X-Scope-OrgID: tenant-a}
```

Server side (receivers: otlp grpc/http, jsonlogs):

```yaml
tls:
  cert_file: server.pem        # with key_file: serve TLS
  key_file: server-key.pem
  client_ca_file: ca.pem       # require client certificates signed by this CA (mTLS)
  min_version: "1.2"
auth:
  bearer_token: ${env:INGEST_TOKEN}   # and/or bearer_tokens: [..], bearer_token_file: path
```

`TLSServerSettings` and `ServerAuthSettings` (bearer tokens or basic
credentials, compared in constant time; see `pipeline.receiverhelper.auth.Authenticator`).

Secrets (`bearer_token`, `password`, header values) are `SecretStr`: they
print as `**********` in errors, logs and `otelpipe validate` output.

Credentials in an exporter's URL (`endpoint: http://user:pw@host`, also the
`*_endpoint` keys) become `auth.basic`, and the URL is kept without them, as
curl and the Collector's confighttp do, so they never show in a message. When
`auth` (or an `Authorization` header) is also configured, or two URLs carry
different credentials, the config is invalid: `endpoint: credentials in the
URL and auth.basic both set; use one`.
"""

from __future__ import annotations

import base64
import hmac
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.secrets import has_userinfo, split_userinfo

TLSVersion = Literal["1.2", "1.3"]
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _readable(path: str | None, key: str) -> None:
    if path and not Path(path).is_file():
        raise ValueError(f"{key} {path!r} does not exist or is not a file")


class TLSClientSettings(ComponentConfig):
    insecure: bool = Field(
        False, description="plaintext connection (gRPC); an http:// URL is plaintext anyway")
    insecure_skip_verify: bool = Field(
        False, description="encrypt but accept any server certificate (testing only)")
    ca_file: str | None = Field(None, description="PEM CA bundle to verify the server with")
    cert_file: str | None = Field(None, description="PEM client certificate (mutual TLS)")
    key_file: str | None = Field(None, description="PEM private key of cert_file")
    min_version: TLSVersion = "1.2"
    server_name_override: str | None = Field(
        None, description="name to verify the server certificate against (and SNI)")

    @model_validator(mode="after")
    def _check(self) -> TLSClientSettings:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("tls.cert_file and tls.key_file must be given together")
        for key in ("ca_file", "cert_file", "key_file"):
            _readable(getattr(self, key), f"tls.{key}")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: system trust store (or ca_file), min_version, client cert."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.minimum_version = _VERSIONS[self.min_version]
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def pem(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(root CAs, client key, client cert) as bytes, for grpc.ssl_channel_credentials."""
        def read(p: str | None) -> bytes | None:
            return Path(p).read_bytes() if p else None
        return read(self.ca_file), read(self.key_file), read(self.cert_file)


class TLSServerSettings(ComponentConfig):
    cert_file: str = Field(description="PEM server certificate (chain)")
    key_file: str = Field(description="PEM private key of cert_file")
    client_ca_file: str | None = Field(
        None, description="require client certificates signed by this CA (mutual TLS)")
    min_version: TLSVersion = "1.2"

    @model_validator(mode="after")
    def _check(self) -> TLSServerSettings:
        for key in ("cert_file", "key_file", "client_ca_file"):
            _readable(getattr(self, key), f"tls.{key}")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = _VERSIONS[self.min_version]
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def pem(self) -> tuple[bytes, bytes, bytes | None]:
        """(private key, certificate chain, client CA or None), for grpc.ssl_server_credentials."""
        ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes(), ca


class BasicAuth(ComponentConfig):
    username: str
    password: SecretStr


class ClientAuthSettings(ComponentConfig):
    bearer_token: SecretStr | None = None
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _one(self) -> ClientAuthSettings:
        if self.bearer_token is not None and self.basic is not None:
            raise ValueError("auth: give bearer_token or basic, not both")
        return self

    def authorization(self) -> str | None:
        """The Authorization header value, or None."""
        if self.bearer_token is not None:
            return f"Bearer {self.bearer_token.get_secret_value()}"
        if self.basic is not None:
            pair = f"{self.basic.username}:{self.basic.password.get_secret_value()}"
            return "Basic " + base64.b64encode(pair.encode()).decode()
        return None


class ServerAuthSettings(ComponentConfig):
    """What a receiver accepts: bearer tokens and/or basic credentials.

    `bearer_token`, `bearer_tokens` (several valid at once, for rotation) and
    `bearer_token_file` (one token per line; re-read when the file changes, as
    a mounted Kubernetes secret does) may be combined; any of them is accepted.
    """

    bearer_token: SecretStr | None = None
    bearer_tokens: list[SecretStr] = Field(
        default_factory=list, description="several accepted tokens (rotation)")
    bearer_token_file: str | None = Field(
        None, description="file holding accepted tokens, one per line; re-read on change")
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _one(self) -> ServerAuthSettings:
        if self.bearer_token is None and not self.bearer_tokens \
                and self.bearer_token_file is None and self.basic is None:
            raise ValueError("auth: give bearer_token, bearer_tokens, bearer_token_file "
                             "or basic")
        for t in ([self.bearer_token] if self.bearer_token is not None else []) \
                + self.bearer_tokens:
            if not t.get_secret_value().strip():
                raise ValueError("auth: a bearer token cannot be empty")
        _readable(self.bearer_token_file, "auth.bearer_token_file")
        return self

    def file_tokens(self) -> list[str]:
        """Tokens in `bearer_token_file` (one per line, blank lines and '#' skipped)."""
        if not self.bearer_token_file:
            return []
        text = Path(self.bearer_token_file).read_text()
        return [t for t in (line.strip() for line in text.splitlines())
                if t and not t.startswith("#")]

    def expected_headers(self) -> list[str]:
        """Every accepted Authorization header value (scheme spelled canonically)."""
        out = []
        tokens = ([self.bearer_token] if self.bearer_token is not None else []) \
            + list(self.bearer_tokens)
        out += [f"Bearer {t.get_secret_value().strip()}" for t in tokens]
        out += [f"Bearer {t}" for t in self.file_tokens()]
        if self.basic is not None:
            authz = ClientAuthSettings(basic=self.basic).authorization()
            assert authz is not None
            out.append(authz)
        return out

    def check(self, authorization: str | None) -> bool:
        """True if the Authorization header value carries a configured credential.

        Convenience for one-off checks; receivers use a precomputed
        `pipeline.receiverhelper.auth.Authenticator` on the hot path.
        """
        if not authorization:
            return False
        scheme, _, rest = authorization.partition(" ")
        got = f"{scheme.capitalize()} {rest.strip()}".encode()
        ok = False
        for expected in self.expected_headers():
            ok |= hmac.compare_digest(got, expected.encode())
        return ok


# The URL keys of exporters whose userinfo becomes `auth.basic`.
URL_KEYS = ("endpoint", "traces_endpoint", "logs_endpoint", "metrics_endpoint")


def _configured_auth(auth: Any, headers: Any) -> str | None:
    """The key that already sets credentials (auth.basic, auth.bearer_token,
    headers.Authorization), from raw config data or validated models, else None."""
    if isinstance(auth, ClientAuthSettings):
        auth = {"basic": auth.basic, "bearer_token": auth.bearer_token}
    if isinstance(auth, dict):
        for key in ("basic", "bearer_token"):
            if auth.get(key) is not None:
                return f"auth.{key}"
    if isinstance(headers, dict):
        for name in headers:
            if str(name).lower() == "authorization":
                return f"headers.{name}"
    return None


class ClientSettings(ComponentConfig):
    """Mix into a network exporter's config: `tls`, `auth`, `headers`.

    Userinfo in the URL keys (`URL_KEYS`) becomes `auth.basic` (see the module's
    docstring); with other credentials configured too it is a validation error.
    """

    url_keys: ClassVar[tuple[str, ...]] = URL_KEYS

    tls: TLSClientSettings = TLSClientSettings()
    auth: ClientAuthSettings = ClientAuthSettings()
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra request headers (values are kept secret)")

    @model_validator(mode="before")
    @classmethod
    def _userinfo_to_basic_auth(cls, data: Any) -> Any:
        """`http://user:pw@host` -> `http://host` + auth.basic, when nothing else
        sets credentials and every URL carries the same ones (else the URL
        keys' validator reports the conflict)."""
        if not isinstance(data, dict):
            return data
        found = {k: split_userinfo(v) for k in cls.url_keys
                 if isinstance(v := data.get(k), str) and has_userinfo(v)}
        if not found or _configured_auth(data.get("auth"), data.get("headers")) is not None:
            return data
        creds = {(user, password) for _, user, password in found.values()}
        if len(creds) != 1:
            return data
        user, password = creds.pop()
        auth = data.get("auth")
        return {**data, **{k: url for k, (url, _, _) in found.items()},
                "auth": {**(auth if isinstance(auth, dict) else {}),
                         "basic": {"username": user or "", "password": password or ""}}}

    @field_validator(*URL_KEYS, check_fields=False)
    @classmethod
    def _credentials_once(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str) and has_userinfo(v):
            other = _configured_auth(info.data.get("auth"), info.data.get("headers"))
            if other is not None:
                raise ValueError(f"credentials in the URL and {other} both set; use one")
            raise ValueError("the URLs carry different credentials; give them once, "
                             "in auth.basic")
        return v

    @field_validator("headers")
    @classmethod
    def _header_names(cls, v: Mapping[str, SecretStr]) -> Mapping[str, SecretStr]:
        for name in v:
            if not name or any(c in name for c in " \t\r\n:"):
                raise ValueError(f"invalid header name {name!r}")
        return v

    def request_headers(self) -> dict[str, str]:
        """Configured headers plus Authorization from `auth` (which wins)."""
        out = {k: v.get_secret_value() for k, v in self.headers.items()}
        authz = self.auth.authorization()
        if authz is not None:
            out = {k: v for k, v in out.items() if k.lower() != "authorization"}
            out["Authorization"] = authz
        return out
