"""`redact` processor: masks secrets in log bodies, attributes and resources.

```yaml
processors:
  redact:
    mask: "****"                 # what a secret becomes
    hash: sha256                 # instead: a stable digest, so values stay joinable
    hash_key: ${env:REDACT_KEY}  # HMAC key for `hash` (recommended: passwords are guessable)
    blocked_keys: [user.ssn]     # attribute keys whose whole value is always masked
    allowed_keys: [http.route]   # attribute keys never touched
    allow_values: ['4111 ?1111 ?1111 ?1111']  # a secret fully matching one is kept
    patterns:                    # more secrets; a group named `secret` masks only that part
      - {name: ssn, regex: '\\b\\d{3}-\\d{2}-\\d{4}\\b', keywords: ['-']}
    disable_patterns: [card_number]   # built-in patterns to switch off
    summary: true                # redaction.masked.count / .keys on items that were changed
```

What is masked (built-in `patterns`, each can be disabled by name):

- `authorization`: the credential after `Authorization:` / `authorization=` (any
  scheme: `Bearer …`, `Basic …`), the scheme is kept;
- `key_value`: the value of `password=…`, `"password": "…"`, `pwd`, `passwd`,
  `passphrase`, `secret`, `token`, `api_key` / `apikey` / `api-key`,
  `access_key`, `private_key`, `credentials` pairs (`=` or `:`, quoted or not,
  case-insensitive; the keyword may end a longer key: `DB_PASSWORD=`,
  `GITHUB_TOKEN=`, `client_secret=`) and of any upper-case `*_KEY=` pair
  (`SECRET_KEY=`, `AWS_ACCESS_KEY=`); `password reset requested` has no value and
  stays;
- `bearer`: `Bearer <token>` / `Basic <b64>` outside a header (tokens of 16+
  characters with a digit);
- `url_credentials`: the password in `scheme://user:password@host`;
- `jwt`: JSON Web Tokens (`eyJ….eyJ….…`);
- `aws_access_key`: `AKIA…`/`ASIA…` key ids; `vendor_token`: GitHub (`ghp_…`,
  `github_pat_…`), Slack (`xox?-…`), Stripe (`sk_live_…`), Google (`AIza…`);
- `private_key`: PEM `-----BEGIN … PRIVATE KEY-----` blocks;
- `card_number`: 13–19 digits (spaces or dashes allowed) starting with 2–6 and
  passing the Luhn check, so ordinary ids and timestamps stay (about one
  random 16-digit number in twenty would still be masked: the check is a
  checksum, not proof).

Attribute keys that name a secret (last dotted segment `password`, `passwd`,
`pwd`, `secret`, `token`, `api_key`, `apikey`, `access_key`, `private_key`,
`authorization`, `cookie`, `set-cookie`, `credentials`, optionally prefixed
as in `db.password`, `csrf_token`, `x-api-key`, `http.request.header.authorization`)
have their whole value masked, like `blocked_keys`; `secret_keys: false` turns
that off. `gen_ai.usage.input_tokens` or `token_type` are not secret names.

Where: log bodies (strings, and the values inside map/array bodies),
log record, span, span event and link, and data point attributes, span status
messages, resource attributes. Span names and metric names are not scanned.

Cost: a batch is first checked as the serialized bytes it arrived in (one
`bytes.lower()` and a few substring searches): a batch without any trigger
word (`password`, `token`, `key`, `bearer`, `eyj`, 4-digit runs …) passes
untouched, without being decoded or re-encoded. Otherwise each string is
gated the same way and only strings with a trigger run the combined regex;
see docs/processors.md for measured costs.

Modules: `patterns` (the built-in secret patterns and secret key names), `config`
(the keys), `redactor` (compiled patterns and the per-value scan: the hot path),
`processor` (OTLP items of a batch through the redactor, the summary attributes).
"""

from __future__ import annotations

from pipeline.component import Factory, Kind, ProcessorCreateSettings, Signal
from pipeline.processors.redact.config import RedactConfig
from pipeline.processors.redact.processor import RedactProcessor


def _create(settings: ProcessorCreateSettings, config: RedactConfig) -> RedactProcessor:
    return RedactProcessor(settings, config)


factory = Factory(type="redact", kind=Kind.PROCESSOR, config_model=RedactConfig,
                  create=_create, signals=frozenset(Signal),
                  description="masks secrets (tokens, passwords, keys, card numbers) in "
                              "bodies and attributes")
