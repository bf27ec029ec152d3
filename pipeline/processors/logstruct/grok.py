"""Grok: named, reusable regular expressions, compiled to one Python `re` pattern.

`%{PATTERN}` inserts a library pattern (as a non-capturing group),
`%{PATTERN:field}` also captures it as `field`, and `%{PATTERN:field:int}`
(or `:float`) converts the captured text. Field names may contain dots
(`http.request.method`) and may repeat (the first group that matched wins).
Inline `(?<field>...)` captures work too. The library follows Logstash's
legacy `grok-patterns` (POSIX classes rewritten for Python); user
`pattern_definitions` extend or override it.

A field whose pattern is `QS` or `QUOTEDSTRING` is captured without its
surrounding quotes (and with `\\"` unescaped): the quotes are syntax, not data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PATTERNS", "GrokError", "GrokPattern", "compile_grok"]


class GrokError(ValueError):
    """A grok expression cannot be compiled."""


_IPV6 = (
    r"((([0-9A-Fa-f]{1,4}:){7}([0-9A-Fa-f]{1,4}|:))|(([0-9A-Fa-f]{1,4}:){6}(:[0-9A-Fa-f]{1,4}"
    r"|((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})|:))|"
    r"(([0-9A-Fa-f]{1,4}:){5}(((:[0-9A-Fa-f]{1,4}){1,2})|:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})|:))|(([0-9A-Fa-f]{1,4}:){4}(((:[0-9A-Fa-f]"
    r"{1,4}){1,3})|((:[0-9A-Fa-f]{1,4})?:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]"
    r"\d|1\d\d|[1-9]?\d)){3}))|:))|(([0-9A-Fa-f]{1,4}:){3}(((:[0-9A-Fa-f]{1,4}){1,4})|((:"
    r"[0-9A-Fa-f]{1,4}){0,2}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|"
    r"[1-9]?\d)){3}))|:))|(([0-9A-Fa-f]{1,4}:){2}(((:[0-9A-Fa-f]{1,4}){1,5})|((:[0-9A-Fa-f]"
    r"{1,4}){0,3}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
    r"))|:))|(([0-9A-Fa-f]{1,4}:){1}(((:[0-9A-Fa-f]{1,4}){1,6})|((:[0-9A-Fa-f]{1,4}){0,4}:"
    r"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:))|(:"
    r"(((:[0-9A-Fa-f]{1,4}){1,7})|((:[0-9A-Fa-f]{1,4}){0,5}:((25[0-5]|2[0-4]\d|1\d\d|"
    r"[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:)))(%.+)?"
)
_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[0-1]?[0-9]{1,2})"

#: The built-in library (Logstash legacy names).
PATTERNS: dict[str, str] = {
    "USERNAME": r"[a-zA-Z0-9._-]+",
    "USER": r"%{USERNAME}",
    "EMAILLOCALPART": r"[a-zA-Z0-9!#$%&'*+\-/=?^_`{|}~]{1,64}"
                      r"(?:\.[a-zA-Z0-9!#$%&'*+\-/=?^_`{|}~]{1,62}){0,63}",
    "EMAILADDRESS": r"%{EMAILLOCALPART}@%{HOSTNAME}",
    "INT": r"(?:[+-]?(?:[0-9]+))",
    "BASE10NUM": r"(?<![0-9.+-])(?>[+-]?(?:(?:[0-9]+(?:\.[0-9]+)?)|(?:\.[0-9]+)))",
    "NUMBER": r"(?:%{BASE10NUM})",
    "BASE16NUM": r"(?<![0-9A-Fa-f])(?:[+-]?(?:0x)?(?:[0-9A-Fa-f]+))",
    "BASE16FLOAT": r"\b(?<![0-9A-Fa-f.])(?:[+-]?(?:0x)?(?:(?:[0-9A-Fa-f]+(?:\.[0-9A-Fa-f]*)?)"
                   r"|(?:\.[0-9A-Fa-f]+)))\b",
    "POSINT": r"\b(?:[1-9][0-9]*)\b",
    "NONNEGINT": r"\b(?:[0-9]+)\b",
    "WORD": r"\b\w+\b",
    "NOTSPACE": r"\S+",
    "SPACE": r"\s*",
    "DATA": r".*?",
    "GREEDYDATA": r".*",
    "QUOTEDSTRING": r"(?>(?<!\\)(?>\"(?>\\.|[^\\\"]+)+\"|\"\"|(?>'(?>\\.|[^\\']+)+')|''"
                    r"|(?>`(?>\\.|[^\\`]+)+`)|``))",
    "UUID": r"[A-Fa-f0-9]{8}-(?:[A-Fa-f0-9]{4}-){3}[A-Fa-f0-9]{12}",
    "URN": r"urn:[0-9A-Za-z][0-9A-Za-z-]{0,31}:(?:%[0-9a-fA-F]{2}|[0-9A-Za-z()+,.:=@;$_!*'/?#-])+",
    # Networking
    "CISCOMAC": r"(?:(?:[A-Fa-f0-9]{4}\.){2}[A-Fa-f0-9]{4})",
    "WINDOWSMAC": r"(?:(?:[A-Fa-f0-9]{2}-){5}[A-Fa-f0-9]{2})",
    "COMMONMAC": r"(?:(?:[A-Fa-f0-9]{2}:){5}[A-Fa-f0-9]{2})",
    "MAC": r"(?:%{CISCOMAC}|%{WINDOWSMAC}|%{COMMONMAC})",
    "IPV6": _IPV6,
    "IPV4": rf"(?<![0-9]){_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}(?![0-9])",
    "IP": r"(?:%{IPV6}|%{IPV4})",
    "HOSTNAME": r"\b(?:[0-9A-Za-z][0-9A-Za-z-]{0,62})(?:\.(?:[0-9A-Za-z][0-9A-Za-z-]{0,62}))*"
                r"(?:\.?|\b)",
    "IPORHOST": r"(?:%{IP}|%{HOSTNAME})",
    "HOSTPORT": r"%{IPORHOST}:%{POSINT}",
    # Paths and URIs
    "PATH": r"(?:%{UNIXPATH}|%{WINPATH})",
    "UNIXPATH": r"(?:/[\w%!$@:.,+~-]*)+",
    "TTY": r"(?:/dev/(?:pts|tty(?:[pq])?)(?:\w+)?/?(?:[0-9]+))",
    "WINPATH": r"(?>[A-Za-z]+:|\\)(?:\\[^\\?*]*)+",
    # Logstash: `[A-Za-z]([A-Za-z0-9+\-.]+)+`, a nested quantifier (exponential on a
    # long word not followed by `://`); the same language without it:
    "URIPROTO": r"[A-Za-z][A-Za-z0-9+\-.]+",
    "URIHOST": r"%{IPORHOST}(?::%{POSINT})?",
    "URIPATH": r"(?:/[A-Za-z0-9$.+!*'(){},~:;=@#%&_\-]*)+",
    "URIQUERY": r"[A-Za-z0-9$.+!*'|(){},~@#%&/=:;_?\-\[\]<>]*",
    "URIPARAM": r"\?%{URIQUERY}",
    "URIPATHPARAM": r"%{URIPATH}(?:%{URIPARAM})?",
    "URI": r"%{URIPROTO}://(?:%{USER}(?::[^@]*)?@)?(?:%{URIHOST})?(?:%{URIPATH}(?:%{URIPARAM})?)?",
    # Dates and times
    "MONTH": r"\b(?:[Jj]an(?:uary|uar)?|[Ff]eb(?:ruary|ruar)?|[Mm](?:a|ä)?r(?:ch|z)?|[Aa]pr(?:il)?"
             r"|[Mm]a(?:y|i)?|[Jj]un(?:e|i)?|[Jj]ul(?:y|i)?|[Aa]ug(?:ust)?|[Ss]ep(?:tember)?"
             r"|[Oo](?:c|k)?t(?:ober)?|[Nn]ov(?:ember)?|[Dd]e(?:c|z)(?:ember)?)\b",
    "MONTHNUM": r"(?:0?[1-9]|1[0-2])",
    "MONTHNUM2": r"(?:0[1-9]|1[0-2])",
    "MONTHDAY": r"(?:(?:0[1-9])|(?:[12][0-9])|(?:3[01])|[1-9])",
    "DAY": r"(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?"
           r"|Sun(?:day)?)",
    "YEAR": r"(?>\d\d){1,2}",
    "HOUR": r"(?:2[0123]|[01]?[0-9])",
    "MINUTE": r"(?:[0-5][0-9])",
    "SECOND": r"(?:(?:[0-5]?[0-9]|60)(?:[:.,][0-9]+)?)",
    "TIME": r"(?<![0-9])%{HOUR}:%{MINUTE}(?::%{SECOND})(?![0-9])",
    "DATE_US": r"%{MONTHNUM}[/-]%{MONTHDAY}[/-]%{YEAR}",
    "DATE_EU": r"%{MONTHDAY}[./-]%{MONTHNUM}[./-]%{YEAR}",
    "ISO8601_TIMEZONE": r"(?:Z|[+-]%{HOUR}(?::?%{MINUTE}))",
    "ISO8601_SECOND": r"%{SECOND}",
    "TIMESTAMP_ISO8601": r"%{YEAR}-%{MONTHNUM}-%{MONTHDAY}[T ]%{HOUR}:?%{MINUTE}(?::?%{SECOND})?"
                         r"%{ISO8601_TIMEZONE}?",
    "DATE": r"(?:%{DATE_US}|%{DATE_EU})",
    "DATESTAMP": r"%{DATE}[- ]%{TIME}",
    "TZ": r"(?:[APMCE][SD]T|UTC)",
    "DATESTAMP_RFC822": r"%{DAY} %{MONTH} %{MONTHDAY} %{YEAR} %{TIME} %{TZ}",
    "DATESTAMP_RFC2822": r"%{DAY}, %{MONTHDAY} %{MONTH} %{YEAR} %{TIME} %{ISO8601_TIMEZONE}",
    "DATESTAMP_OTHER": r"%{DAY} %{MONTH} %{MONTHDAY} %{TIME} %{TZ} %{YEAR}",
    "DATESTAMP_EVENTLOG": r"%{YEAR}%{MONTHNUM2}%{MONTHDAY}%{HOUR}%{MINUTE}%{SECOND}",
    "HTTPDATE": r"%{MONTHDAY}/%{MONTH}/%{YEAR}:%{TIME} %{INT}",
    "HTTPDERROR_DATE": r"%{DAY} %{MONTH} %{MONTHDAY} %{TIME} %{YEAR}",
    "SYSLOGTIMESTAMP": r"%{MONTH} +%{MONTHDAY} %{TIME}",
    # Levels
    "LOGLEVEL": r"(?:[Aa]lert|ALERT|[Tt]race|TRACE|[Dd]ebug|DEBUG|[Nn]otice|NOTICE|[Ii]nfo?"
                r"(?:rmation)?|INFO?(?:RMATION)?|[Ww]arn?(?:ing)?|WARN?(?:ING)?|[Ee]rr?(?:or)?"
                r"|ERR?(?:OR)?|[Cc]rit?(?:ical)?|CRIT?(?:ICAL)?|[Ff]atal|FATAL|[Ss]evere|SEVERE"
                r"|EMERG(?:ENCY)?|[Ee]merg(?:ency)?)",
    # Syslog
    "PROG": r"[\x21-\x5a\x5c\x5e-\x7e]+",
    "SYSLOGPROG": r"%{PROG:program}(?:\[%{POSINT:pid:int}\])?",
    "SYSLOGHOST": r"%{IPORHOST}",
    "SYSLOGFACILITY": r"<%{NONNEGINT:syslog.facility:int}.%{NONNEGINT:syslog.priority:int}>",
    "SYSLOGBASE": r"%{SYSLOGTIMESTAMP:timestamp} (?:%{SYSLOGFACILITY} )?%{SYSLOGHOST:logsource} "
                  r"%{SYSLOGPROG}:",
    "SYSLOGBASE2": r"(?:%{SYSLOGTIMESTAMP:timestamp}|%{TIMESTAMP_ISO8601:timestamp}) "
                   r"(?:%{SYSLOGFACILITY} )?%{SYSLOGHOST:logsource}(?: %{SYSLOGPROG}:|)",
    "SYSLOGLINE": r"%{SYSLOGBASE2} %{GREEDYDATA:message}",
    "SYSLOG5424PRINTASCII": r"[!-~]+",
    "SYSLOG5424PRI": r"<%{NONNEGINT:syslog5424_pri}>",
    # Logstash: `\[%{DATA}\]+`, whose lazy `.*?` and `\]+` both take `]`: quadratic
    # on `[` and a long run of `]`. Here: the same text up to the end of a run of `]`,
    # as few elements (text, then `]`s) as the rest of the pattern allows, each element
    # taken whole (atomic): linear.
    "SYSLOG5424SD": r"\[(?>[^\]\n]*+\]++)+?",
    "SYSLOG5424BASE": r"%{SYSLOG5424PRI}%{NONNEGINT:syslog.version:int} +"
                      r"(?:%{TIMESTAMP_ISO8601:timestamp}|-) +(?:%{IPORHOST:hostname}|-) +"
                      r"(?:%{SYSLOG5424PRINTASCII:appname}|-) +(?:%{SYSLOG5424PRINTASCII:procid}"
                      r"|-) +(?:%{SYSLOG5424PRINTASCII:syslog.msgid}|-) +"
                      r"(?:%{SYSLOG5424SD:syslog.structured_data}|-|)",
    "SYSLOG5424LINE": r"%{SYSLOG5424BASE} +%{GREEDYDATA:message}",
    # Web servers
    "QS": r"%{QUOTEDSTRING}",
    "HTTPDUSER": r"(?:%{EMAILADDRESS}|%{USER})",
    "HTTPD_COMMONLOG": r"%{IPORHOST:clientip} %{HTTPDUSER:ident} %{HTTPDUSER:auth} "
                       r"\[%{HTTPDATE:timestamp}\] \"(?:%{WORD:verb} %{NOTSPACE:request}"
                       r"(?: HTTP/%{NUMBER:httpversion})?|%{DATA:rawrequest})\" "
                       r"(?:-|%{NUMBER:response:int}) (?:-|%{NUMBER:bytes:int})",
    "HTTPD_COMBINEDLOG": r"%{HTTPD_COMMONLOG} %{QS:referrer} %{QS:agent}",
    "HTTPD20_ERRORLOG": r"\[%{HTTPDERROR_DATE:timestamp}\] \[%{LOGLEVEL:level}\] "
                        r"(?:\[client %{IPORHOST:clientip}\] ){0,1}%{GREEDYDATA:message}",
    "HTTPD24_ERRORLOG": r"\[%{HTTPDERROR_DATE:timestamp}\] \[(?:%{WORD:module})?:%{LOGLEVEL:level}"
                        r"\] \[pid %{POSINT:pid:int}(?::tid %{INT:tid:int})?\]"
                        r"(?: \(%{POSINT:proxy_errorcode}\)%{DATA:proxy_message}:)?"
                        r"(?: \[client %{IPORHOST:clientip}(?::%{POSINT:clientport})?\])?"
                        r"(?: %{DATA:errorcode}:)? %{GREEDYDATA:message}",
    "HTTPD_ERRORLOG": r"(?:%{HTTPD20_ERRORLOG}|%{HTTPD24_ERRORLOG})",
    "COMMONAPACHELOG": r"%{HTTPD_COMMONLOG}",
    "COMBINEDAPACHELOG": r"%{HTTPD_COMBINEDLOG}",
    # Java
    "JAVACLASS": r"(?:[a-zA-Z$_][a-zA-Z$_0-9]*\.)*[a-zA-Z$_][a-zA-Z$_0-9]*",
    "JAVAFILE": r"(?:[a-zA-Z$_0-9. -]+)",
    "JAVATHREAD": r"(?:[A-Z]{2}-Processor[\d]+)",
}

_REF = re.compile(r"%\{(\w+)(?::([\w.@\[\]\-]+))?(?::(int|float))?\}")
_INLINE = re.compile(r"\(\?<([A-Za-z_][\w.@\-]*)>")
_QUOTED = frozenset({"QS", "QUOTEDSTRING"})
_MAX_DEPTH = 64


@dataclass(frozen=True)
class GrokPattern:
    """A compiled grok expression: `fields[i]` names Python group `i + 1`."""

    regex: re.Pattern[str]
    #: per capturing group: (field name, conversion: "" | "int" | "float" | "unquote")
    fields: tuple[tuple[str, str], ...]


def compile_grok(expr: str, definitions: Mapping[str, str] | None = None) -> GrokPattern:
    """Compile a grok expression; raises GrokError naming the problem."""
    library = dict(PATTERNS)
    if definitions:
        library.update(definitions)
    compiler = _Compiler(library)
    try:
        source = compiler.expand(expr, 0, ())
        regex = re.compile(source)
    except (re.error, ValueError) as exc:
        raise GrokError(f"invalid grok expression {expr!r}: {exc}") from None
    fields = compiler.fields
    if regex.groups != len(fields):  # pragma: no cover - a bug in the expansion above
        raise GrokError(f"internal error compiling {expr!r}: group count mismatch")
    return GrokPattern(regex, tuple(fields))


class _Compiler:
    """Expands one grok expression into a Python regex; `fields` names its groups."""

    def __init__(self, library: Mapping[str, str]):
        self.library = library
        self.fields: list[tuple[str, str]] = []

    def expand(self, text: str, depth: int, stack: tuple[str, ...]) -> str:
        """`text` with every `%{NAME[:field[:conv]]}` replaced by its pattern."""
        if depth > _MAX_DEPTH:
            raise GrokError(f"patterns nested deeper than {_MAX_DEPTH} levels")
        out: list[str] = []
        pos = 0
        for m in _REF.finditer(text):
            out.append(self.inline(text[pos:m.start()]))
            pos = m.end()
            name, field, conv = m.group(1), m.group(2), m.group(3)
            body = self.library.get(name)
            if body is None:
                raise GrokError(f"unknown grok pattern %{{{name}}}")
            if name in stack:
                raise GrokError(f"grok pattern {name} refers to itself")
            if field:
                if not conv and name in _QUOTED:
                    conv = "unquote"
                self.fields.append((field, conv or ""))
                out.append("(")
            else:
                out.append("(?:")
            out.append(self.expand(body, depth + 1, (*stack, name)))
            out.append(")")
        out.append(self.inline(text[pos:]))
        return "".join(out)

    def inline(self, text: str) -> str:
        """Turn every capturing group of plain regex text into a non-capturing one,
        except the inline named captures `(?<name>...)`, which become fields (in order)."""
        res: list[str] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == "\\":
                res.append(text[i:i + 2])
                i += 2
            elif c == "[":  # a character class: copy verbatim
                j = _class_end(text, i)
                res.append(text[i:j + 1])
                i = j + 1
            elif c == "(":
                i = self._group(text, i, res)
            else:
                res.append(c)
                i += 1
        return "".join(res)

    def _group(self, text: str, i: int, res: list[str]) -> int:
        """The group opening at `text[i] == "("` into `res`; the index after its opener."""
        m = _INLINE.match(text, i)
        if m:
            self.fields.append((m.group(1), ""))
            res.append("(")
            return m.end()
        if text.startswith("(?P<", i):
            j = text.index(">", i)
            self.fields.append((text[i + 4:j], ""))
            res.append("(")
            return j + 1
        if not text.startswith("(?", i):
            res.append("(?:")
        else:
            res.append("(")
        return i + 1


def _class_end(text: str, i: int) -> int:
    """Index of the `]` closing the character class that opens at `text[i] == "["`."""
    n = len(text)
    j = i + 1
    if j < n and text[j] == "^":
        j += 1
    if j < n and text[j] == "]":
        j += 1
    while j < n and text[j] != "]":
        j += 2 if text[j] == "\\" else 1
    return j


def unquote(v: str) -> str:
    """`"a \\"b\\""` -> `a "b"`; other text unchanged."""
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'`":
        v = v[1:-1]
        if "\\" in v:
            v = v.replace("\\\\", "\x00").replace("\\" + '"', '"').replace("\x00", "\\")
    return v
