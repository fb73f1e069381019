"""A loopback fake of the KFP v2beta1 REST API and of Kubeflow's Dex login, for contract tests.

It stands in for a real KFP API server (and the oauth2-proxy + Dex in front of it), which cannot
run here: no Kubernetes cluster, no Argo, no MySQL. It implements the endpoints that
``kfp.Client`` calls for submit and schedule - healthz, experiments, pipelines (upload,
upload_version, list, versions), runs (create, get) and recurring runs (create, list, delete,
enable, disable) - with the JSON shapes, filters, pagination and auth behaviour of the real
server, and it records every request so tests can assert the bodies the client sends.

It plays one KFP release (``FakeKfpState.server_version``) and parses uploads as that release's
API server does (backend/src/apiserver/template/v2_template.go, ``NewV2SpecTemplate``): the
pipeline spec with ``protojson.Unmarshal`` against that release's protos (unknown fields: HTTP
400 "invalid v2 pipeline spec"), schemaVersion 2.1.0, a non-empty name; a platform-spec document
that does not parse is dropped without a word (``IsPlatformSpecWithKubernetesConfig`` returns
false), which the fake records in ``dropped_platform_specs``. At run creation it plays the
driver: each Kubernetes executor config is parsed strictly (jsonpb before 2.5, protojson later)
and a config the release cannot parse fails the run. Healthz answers ``tag_name`` as the server's
main.go writes it.

List filters and sorting follow the server at 2.2.0 (the oldest supported release; unchanged
through 2.17): the ``filter`` query parameter is a v2beta1 ``Filter`` proto as JSON, parsed with
jsonpb (backend/src/apiserver/server/list_request_util.go, ``parseAPIFilter``: an unknown field
is refused), its predicates checked and applied as backend/src/apiserver/filter/filter.go does
(``checkPredicate``: IN takes a list, the scalar operators a scalar; a timestamp compares as Unix
seconds), keys limited to each model's ``APIToModelFieldMap`` (backend/src/apiserver/model/
run.go, experiment.go, pipeline.go, pipeline_version.go); ``sort_by`` is "<field>[ asc|desc]"
over the same keys (backend/src/apiserver/list/list.go, ``NewOptions``). A recurring run's cron
is parsed as the server does: ``cron.Parse`` of github.com/robfig/cron v1.2.0 (go.mod at every
supported tag; backend/src/apiserver/server/api_converter.go), whose parser is
``Second | Minute | Hour | Dom | Month | DowOptional | Descriptor`` (parser.go at v1.2.0).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import yaml
from google.protobuf import json_format
from tests.kubeflow.kfp_protos import release_protos

API = "/apis/v2beta1"
UI_PREFIX = "/pipeline"
CREATED_AT = "2024-05-01T03:00:00Z"
SESSION_COOKIE = "oauth2_proxy_kubeflow"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class DexUser:
    username: str
    password: str
    require_approval: bool = True


@dataclass
class FakeKfpState:
    """What the fake server holds; tests read and script it."""

    multi_user: bool = True
    server_version: str = "2.2.0"  # the default target; a release under tests/kubeflow/protos
    tag_name: str | None = None  # what healthz reports; None: server_version
    # version id -> why the server ignored its platform spec (the error protojson gave)
    dropped_platform_specs: dict[str, str] = field(default_factory=dict)
    platform_specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # version id -> spec
    # Accepted credentials: a bearer token, cookies that must all be present, or a Dex user.
    tokens: set[str] = field(default_factory=set)
    cookies: dict[str, str] = field(default_factory=dict)
    dex_user: DexUser | None = None
    # Unauthenticated API calls: 401 JSON, or 302 to the Dex login (oauth2-proxy's behaviour).
    redirect_unauthenticated: bool = False
    # States that GET /runs/{id} reports one after another (the last one repeats).
    run_states: list[str] = field(default_factory=lambda: ["PENDING"])
    # The server's clock: a run's created_at (the server stamps it when the run is created).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    run_error: str = ""
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)  # version id -> uploaded file
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    recurring_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    dex_sessions: set[str] = field(default_factory=set)
    _polls: dict[str, int] = field(default_factory=dict)

    def api_requests(self, method: str | None = None, path: str = "") -> list[Recorded]:
        """API requests to ``path`` exactly, or under it when it ends with ``/`` (or is empty)."""

        def wanted(r: Recorded) -> bool:
            if not path or path.endswith("/"):
                return r.path.startswith(API + path)
            return r.path == API + path

        return [r for r in self.requests if wanted(r) and (method is None or r.method == method)]


def _new_id() -> str:
    return str(uuid.uuid4())


def _matches(item: dict[str, Any], filter_json: str) -> bool:
    """Whether ``item`` passes the (already checked) filter."""
    for operation, key, value in _predicates(filter_json, None):
        if not _compare(operation, _field_value(item, key), value):
            return False
    return True


# APIToModelFieldMap of each listable model at 2.2.0 (the v2beta1 and v1beta1 names).
RUN_KEYS = (
    "run_id", "id", "display_name", "name", "created_at", "finished_at", "description",
    "scheduled_at", "storage_state", "status", "namespace", "experiment_id", "state",
    "state_history", "runtime_details", "recurring_run_id",
)  # fmt: skip
EXPERIMENT_KEYS = (
    "id", "experiment_id", "name", "display_name", "created_at", "description", "namespace",
    "storage_state",
)  # fmt: skip
PIPELINE_KEYS = (
    "id",
    "pipeline_id",
    "name",
    "display_name",
    "created_at",
    "description",
    "namespace",
)
VERSION_KEYS = (
    "id", "pipeline_version_id", "name", "display_name", "created_at", "status", "description",
    "pipeline_spec",
)  # fmt: skip
# v1beta1 names of the same columns, read from the v2beta1 objects the fake holds.
_ALIASES = {"name": "display_name"}
_PRIMARY_KEYS = ("run_id", "pipeline_version_id", "pipeline_id", "experiment_id")
OPERATIONS = {
    1: "EQUALS",
    2: "NOT_EQUALS",
    3: "GREATER_THAN",
    5: "GREATER_THAN_EQUALS",
    6: "LESS_THAN",
    7: "LESS_THAN_EQUALS",
    8: "IN",
    9: "IS_SUBSTRING",
}
# Predicate's value oneof (backend/api/v2beta1/filter.proto): proto name -> (JSON name, kind).
_VALUE_FIELDS = {
    "int_value": ("intValue", "int32"),
    "long_value": ("longValue", "int64"),
    "string_value": ("stringValue", "string"),
    "timestamp_value": ("timestampValue", "timestamp"),
    "int_values": ("intValues", "[]int32"),
    "long_values": ("longValues", "[]int64"),
    "string_values": ("stringValues", "[]string"),
}


class ApiError(ValueError):
    """An error the server answers with an HTTP status (400 InvalidInput unless told)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _unix(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _predicates(filter_json: str, keys: tuple[str, ...] | None) -> list[tuple[str, str, Any]]:
    """The filter's predicates as (operation, key, value); raise ApiError as the server does."""
    if not filter_json:
        return []

    def refuse(why: str) -> ApiError:
        return ApiError(
            f"Invalid input error: failed to parse valid filter from {filter_json!r}: {why}"
        )

    try:
        document = json.loads(filter_json)
    except json.JSONDecodeError as error:
        raise refuse(str(error)) from None
    if not isinstance(document, dict):
        raise refuse("not a JSON object")
    unknown = sorted(set(document) - {"predicates"})
    if unknown:
        raise refuse(f"unknown field {unknown[0]!r} in v2beta1.Filter")
    parsed = []
    for predicate in document.get("predicates") or []:
        names = {"operation", "key"} | set(_VALUE_FIELDS) | {j for j, _ in _VALUE_FIELDS.values()}
        unknown = sorted(set(predicate) - names)
        if unknown:
            raise refuse(f"unknown field {unknown[0]!r} in v2beta1.Predicate")
        raw_operation = predicate.get("operation", 0)
        operation = (
            OPERATIONS.get(raw_operation)
            if isinstance(raw_operation, int)
            else raw_operation
            if raw_operation in OPERATIONS.values()
            else None
        )
        if operation is None:
            if raw_operation in (0, "OPERATION_UNSPECIFIED"):
                raise ApiError(
                    "Unknown API version error: Filter.Predicate.Operation "
                    f"{raw_operation!r} is not supported"
                )
            raise refuse(f"unknown value {raw_operation!r} for enum v2beta1.Predicate_Operation")
        given = [
            (name, predicate[name] if name in predicate else predicate[json_name], kind)
            for name, (json_name, kind) in _VALUE_FIELDS.items()
            if name in predicate or json_name in predicate
        ]
        if len(given) > 1:
            raise refuse(f"oneof value is already set ({given[0][0]}, {given[1][0]})")
        if not given:
            raise ApiError("Unknown API version error: Filter.Predicate.Value <nil>")
        name, raw, kind = given[0]
        value: Any
        if kind == "timestamp":
            try:
                value = _unix(str(raw))
            except ValueError:
                raise refuse(f"bad Timestamp {raw!r}") from None
        elif kind.startswith("[]"):
            if not isinstance(raw, dict) or set(raw) - {"values"}:
                raise refuse(f"{name}: expected an object with 'values'")
            value = list(raw.get("values") or [])
            if kind != "[]string":
                value = [int(v) for v in value]
        else:
            value = int(raw) if kind in ("int32", "int64") else str(raw)
        key = predicate.get("key", "")
        if not key:
            raise ApiError(
                f"Invalid input error: Predicate key cannot be empty for operation {operation} "
                f"and value {value}"
            )
        # filter.go checkPredicate
        if operation == "IN" and not kind.startswith("[]"):
            raise ApiError(f"Invalid input error: cannot use IN operator with scalar type {kind}")
        if operation not in ("IN", "IS_SUBSTRING") and kind.startswith("[]"):
            raise ApiError(
                f"Invalid input error: cannot use scalar operator {operation} on array type {kind}"
            )
        if operation == "IS_SUBSTRING" and kind != "string":
            raise ApiError(
                f"Invalid input error: cannot use non string value type {operation} with "
                f"operator {kind}"
            )
        # list.go NewOptions -> filter.ReplaceKeys(APIToModelFieldMap)
        if keys is not None and key not in keys:
            raise ApiError(
                f"Invalid input error: no support for filtering on unrecognized field {key!r}"
            )
        parsed.append((operation, key, value))
    return parsed


def _field_value(item: dict[str, Any], key: str) -> Any:
    if key == "id":
        key = next((k for k in _PRIMARY_KEYS if k in item), key)
    key = _ALIASES.get(key, key)
    value = item.get(key)
    if key.endswith("_at") and isinstance(value, str):
        return _unix(value)  # the *_at columns hold Unix seconds (CreatedAtInSec, ...)
    return value


def _compare(operation: str, have: Any, want: Any) -> bool:
    if have is None:
        return False  # SQL: a comparison with NULL is never true
    try:
        return {
            "EQUALS": lambda: have == want,
            "NOT_EQUALS": lambda: have != want,
            "GREATER_THAN": lambda: have > want,
            "GREATER_THAN_EQUALS": lambda: have >= want,
            "LESS_THAN": lambda: have < want,
            "LESS_THAN_EQUALS": lambda: have <= want,
            "IN": lambda: have in want,
            "IS_SUBSTRING": lambda: str(want) in str(have),
        }[operation]()
    except TypeError:
        return False


def _listed(
    items: list[dict[str, Any]], query: dict[str, str], keys: tuple[str, ...], model: str
) -> list[dict[str, Any]]:
    """``items`` filtered and sorted as the server's list options do."""
    _predicates(query.get("filter", ""), keys)  # raises what the server refuses
    sort_by = query.get("sort_by", "")
    words = sort_by.lower().split()
    if len(words) > 2 or (len(words) == 2 and words[1] not in ("desc", "asc")):
        raise ApiError(
            f"Invalid input error: Received invalid sort by format {sort_by!r}. Supported format: "
            '"field_name", "field_name desc", or "field_name asc"'
        )
    if words and words[0] not in keys and not (model == "Run" and words[0].startswith("metric:")):
        raise ApiError(
            f"Invalid input error: Invalid sorting field: {words[0]!r} on listable type {model}"
        )
    kept = [i for i in items if _matches(i, query.get("filter", ""))]
    if words:
        # Stable sort: items of equal value keep the order they were stored in.
        kept.sort(
            key=lambda i: (_field_value(i, words[0]) is None, _field_value(i, words[0]) or 0),
            reverse=len(words) == 2 and words[1] == "desc",
        )
    return kept


# -- robfig/cron v1.2.0 cron.Parse: Second | Minute | Hour | Dom | Month | DowOptional | Descriptor
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_BOUNDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    (0, 6, {d: i for i, d in enumerate(_WEEKDAYS)}),
)  # fmt: skip
_CRON_DESCRIPTORS = (
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
)
_GO_DURATION = re.compile(r"[-+]?(0|([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+)")


def _go_atoi(expr: str) -> int:
    # strconv.Atoi: optional sign, decimal digits.
    if not re.fullmatch(r"[+-]?[0-9]+", expr):
        raise ValueError(
            f'Failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax'
        )
    number = int(expr)
    if number < 0:
        raise ValueError(f"Negative number ({number}) not allowed: {expr}")
    return number


def _cron_range(expr: str, low: int, high: int, names: dict[str, int]) -> None:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    if low_and_high[0] in ("*", "?"):
        start, end = low, high
    else:

        def value(text: str) -> int:
            return names[text.lower()] if text.lower() in names else _go_atoi(text)

        start = value(low_and_high[0])
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = value(low_and_high[1])
        else:
            raise ValueError(f"Too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _go_atoi(range_and_step[1])
        if single:
            end = high  # "N/step" means "N-max/step"
    else:
        raise ValueError(f"Too many slashes: {expr}")
    if start < low:
        raise ValueError(f"Beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise ValueError(f"End of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise ValueError(f"Beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"Step of range should be a positive number: {expr}")


def robfig_cron_parse(spec: str) -> None:
    """Raise ValueError with robfig/cron v1.2.0's message where ``cron.Parse(spec)`` fails."""
    if not spec:
        raise ValueError("Empty spec string")
    if spec[0] == "@":
        if spec in _CRON_DESCRIPTORS:
            return
        if spec.startswith("@every "):
            duration = spec[len("@every ") :]
            if not _GO_DURATION.fullmatch(duration):
                raise ValueError(
                    f'Failed to parse duration {spec}: time: invalid duration "{duration}"'
                )
            return
        raise ValueError(f"Unrecognized descriptor: {spec}")
    fields = spec.split()
    if not 5 <= len(fields) <= 6:  # the day of week is optional
        raise ValueError(f"Expected 5 to 6 fields, found {len(fields)}: {spec}")
    for text, (low, high, names) in zip(fields, _CRON_BOUNDS, strict=False):
        for expr in (part for part in text.split(",") if part):
            _cron_range(expr, low, high, names)


def _multipart_file(headers: dict[str, str], body: bytes) -> bytes:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload
    raise ValueError("no uploadfile part in the multipart body")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        return

    # -- plumbing ---------------------------------------------------------------------------
    def _send(
        self, status: int, payload: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        if isinstance(payload, str):
            body = payload.encode()
        self.send_response(status)
        content_type = "text/html" if isinstance(payload, str) else "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str, status: int = 302, cookie: str = "") -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()

    def _error(self, status: int, message: str) -> None:
        self._send(
            status, {"error": message, "code": 16 if status == 401 else 3, "message": message}
        )

    def _request_cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        jar.load(self.headers.get("Cookie", ""))
        return {k: m.value for k, m in jar.items()}

    def _authenticated(self) -> bool:
        state = self.server.state
        if not (state.tokens or state.cookies or state.dex_user):
            return True
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Bearer ") and authorization[7:] in state.tokens:
            return True
        cookies = self._request_cookies()
        if state.cookies and all(cookies.get(k) == v for k, v in state.cookies.items()):
            return True
        return cookies.get(SESSION_COOKIE, "") in state.dex_sessions

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = parse_qs(parts.query)
        # Kubeflow serves the API under /pipeline (https://<host>/pipeline/apis/v2beta1/...).
        path = (
            parts.path.removeprefix(UI_PREFIX)
            if parts.path.startswith(UI_PREFIX + API)
            else parts.path
        )
        self.server.state.requests.append(Recorded(method, path, query, headers, body))
        if not path.startswith(API):
            self._dex(method, path, query, body)
            return
        if not self._authenticated():
            if self.server.state.redirect_unauthenticated:
                self._redirect(f"/dex/auth?{urlencode({'state': 'api'})}")
            else:
                self._error(401, "Unauthorized: no valid credentials")
            return
        try:
            self._api(method, path[len(API) :], query, headers, body)
        except ApiError as error:
            self._error(error.status, str(error))
        except (KeyError, ValueError) as error:
            self._error(400, f"bad request: {error}")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- Dex (oauth2-proxy in front, Dex behind, as in Kubeflow 1.9+) -------------------------
    def _dex(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.server.state
        user = state.dex_user
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        request_id = (query.get("state") or query.get("req") or ["s1"])[0]
        if path in (UI_PREFIX, UI_PREFIX + "/") and method == "GET":
            if self._request_cookies().get(SESSION_COOKIE) in state.dex_sessions:
                self._send(200, "<html>Kubeflow Pipelines</html>")
            else:
                self._redirect(f"/dex/auth?{urlencode({'state': request_id})}")
        elif path == "/dex/auth" and method == "GET":
            self._send(200, '<html><a href="/dex/auth/local">Log in with Email</a></html>')
        elif path == "/dex/auth/local" and method == "GET":
            self._redirect(f"/dex/auth/local/login?{urlencode({'state': request_id})}")
        elif path == "/dex/auth/local/login" and method == "GET":
            self._send(200, '<html><form method="post"><input name="login"/></form></html>')
        elif path == "/dex/auth/local/login" and method == "POST":
            if (
                user
                and form.get("login") == user.username
                and form.get("password") == user.password
            ):
                target = "/dex/approval" if user.require_approval else "/oauth2/callback"
                self._redirect(f"{target}?{urlencode({'req': request_id})}", status=303)
            else:
                self._send(200, "<html>Invalid Email Address and password</html>")
        elif path == "/dex/approval" and method == "GET":
            self._send(200, '<html><form method="post"><button name="approval"/></form></html>')
        elif path == "/dex/approval" and method == "POST":
            if form.get("approval") != "approve":
                self._send(400, "<html>not approved</html>")
                return
            self._redirect(
                f"/oauth2/callback?{urlencode({'code': 'c0de', 'state': request_id})}", 303
            )
        elif path == "/oauth2/callback" and method == "GET":
            session = uuid.uuid4().hex + uuid.uuid4().hex
            state.dex_sessions.add(session)
            self._redirect(UI_PREFIX, cookie=f"{SESSION_COOKIE}={session}; Path=/; HttpOnly")
        else:
            self._send(404, "<html>not found</html>")

    # -- the KFP API --------------------------------------------------------------------------
    def _page(self, items: list[dict[str, Any]], query: dict[str, list[str]], key: str) -> None:
        size = int((query.get("page_size") or ["10"])[0])
        start = int((query.get("page_token") or ["0"])[0] or 0)
        page = items[start : start + size]
        payload: dict[str, Any] = {"total_size": len(items)}
        if page:
            payload[key] = page
        if start + size < len(items):
            payload["next_page_token"] = str(start + size)
        self._send(200, payload)

    def _api(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        state = self.server.state
        q = {k: v[0] for k, v in query.items()}
        segments = path.strip("/").split("/")
        if method == "GET" and path == "/healthz":
            tag = state.server_version if state.tag_name is None else state.tag_name
            self._send(
                200, {"commit_sha": "0123abc", "tag_name": tag, "multi_user": state.multi_user}
            )
        elif path == "/experiments" and method == "GET":
            namespace = q.get("namespace", "")
            items = [e for e in state.experiments.values() if e.get("namespace", "") == namespace]
            self._page(_listed(items, q, EXPERIMENT_KEYS, "Experiment"), query, "experiments")
        elif path == "/experiments" and method == "POST":
            request = json.loads(body)
            if state.multi_user and not request.get("namespace"):
                self._error(400, "experiment namespace is required in multi-user mode")
                return
            experiment = {
                "experiment_id": _new_id(),
                "display_name": request["display_name"],
                "description": request.get("description", ""),
                "namespace": request.get("namespace", ""),
                "created_at": CREATED_AT,
                "storage_state": "AVAILABLE",
            }
            state.experiments[experiment["experiment_id"]] = experiment
            self._send(200, experiment)
        elif path == "/pipelines" and method == "GET":
            namespace = q.get("namespace", "")
            items = [p for p in state.pipelines.values() if p.get("namespace", "") == namespace]
            self._page(_listed(items, q, PIPELINE_KEYS, "Pipeline"), query, "pipelines")
        elif path == "/pipelines/upload" and method == "POST":
            name = q["name"]
            namespace = q.get("namespace", "")
            if any(
                p["display_name"] == name and p.get("namespace", "") == namespace
                for p in state.pipelines.values()
            ):
                self._error(409, f"pipeline {name} already exists")
                return
            content = _multipart_file(headers, body)
            problem = self._check_template(content)
            if problem:
                self._error(400, problem)
                return
            pipeline = {
                "pipeline_id": _new_id(),
                "display_name": name,
                "name": name,
                "description": q.get("description", ""),
                "namespace": namespace,
                "created_at": CREATED_AT,
            }
            state.pipelines[pipeline["pipeline_id"]] = pipeline
            # Like the real server: an upload also creates the first version, named after it.
            self._add_version(pipeline["pipeline_id"], name, q.get("description", ""), content)
            self._send(200, pipeline)
        elif path == "/pipelines/upload_version" and method == "POST":
            pipeline_id = q["pipelineid"]
            if pipeline_id not in state.pipelines:
                self._error(404, f"pipeline {pipeline_id} not found")
                return
            name = q["name"]
            if any(
                v["display_name"] == name and v["pipeline_id"] == pipeline_id
                for v in state.versions.values()
            ):
                self._error(409, f"version {name} already exists")
                return
            content = _multipart_file(headers, body)
            problem = self._check_template(content)
            if problem:
                self._error(400, problem)
                return
            version = self._add_version(pipeline_id, name, q.get("description", ""), content)
            self._send(200, version)
        elif len(segments) == 3 and segments[0] == "pipelines" and segments[2] == "versions":
            items = [v for v in state.versions.values() if v["pipeline_id"] == segments[1]]
            if q.get("sort_by", "").lower().split() == ["created_at", "desc"]:
                # Uploaded one after another within a second: the last is the newest.
                items.reverse()
            self._page(
                _listed(items, q, VERSION_KEYS, "PipelineVersion"), query, "pipeline_versions"
            )
        elif path == "/runs" and method == "POST":
            request = json.loads(body)
            driver_error = self._driver_error(request)
            run = {
                **request,
                "run_id": _new_id(),
                "state": "FAILED" if driver_error else "PENDING",
                "created_at": state.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "storage_state": "AVAILABLE",
            }
            if driver_error:
                run["error"] = {"code": 2, "message": driver_error}
            state.runs[run["run_id"]] = run
            self._send(200, run)
        elif path == "/runs" and method == "GET":
            items = list(state.runs.values())
            if q.get("experiment_id"):
                if q["experiment_id"] not in state.experiments:
                    raise ApiError(
                        "Failed to list runs due to error fetching namespace for experiment "
                        f"{q['experiment_id']}. Try filtering based on namespace",
                        status=404,
                    )
                items = [r for r in items if r.get("experiment_id") == q["experiment_id"]]
            self._page(_listed(items, q, RUN_KEYS, "Run"), query, "runs")
        elif len(segments) == 2 and segments[0] == "runs" and method == "GET":
            run = state.runs[segments[1]]
            if run.get("error") and run["state"] == "FAILED":
                self._send(200, run)
                return
            poll = state._polls.get(run["run_id"], 0)
            state._polls[run["run_id"]] = poll + 1
            run["state"] = state.run_states[min(poll, len(state.run_states) - 1)]
            if run["state"] == "FAILED" and state.run_error:
                run["error"] = {"code": 2, "message": state.run_error}
            self._send(200, run)
        elif path == "/recurringruns" and method == "POST":
            request = json.loads(body)
            self._check_recurring_run(request)
            recurring = {
                **request,
                "recurring_run_id": _new_id(),
                "status": "ENABLED" if request.get("mode") == "ENABLE" else "DISABLED",
                "created_at": CREATED_AT,
                "updated_at": CREATED_AT,
            }
            state.recurring_runs[recurring["recurring_run_id"]] = recurring
            self._send(200, recurring)
        elif path == "/recurringruns" and method == "GET":
            items = [
                r
                for r in state.recurring_runs.values()
                if not q.get("experiment_id") or r.get("experiment_id") == q["experiment_id"]
            ]
            self._page(items, query, "recurringRuns")  # its json_name in the proto
        elif len(segments) == 2 and segments[0] == "recurringruns" and method == "DELETE":
            state.recurring_runs.pop(segments[1])
            self._send(200, {})
        elif len(segments) == 2 and segments[0] == "recurringruns" and method == "POST":
            run_id, _, action = segments[1].partition(":")
            recurring = state.recurring_runs[run_id]
            if action not in ("enable", "disable"):
                raise ValueError(f"unknown action {action}")
            recurring["status"] = "ENABLED" if action == "enable" else "DISABLED"
            recurring["mode"] = "ENABLE" if action == "enable" else "DISABLE"
            self._send(200, {})
        else:
            self._error(404, f"{method} {API}{path} is not implemented by the fake")

    def _check_recurring_run(self, request: dict[str, Any]) -> None:
        """api_converter.go toModelJob: max concurrency 1-10, cron through cron.Parse."""
        concurrency = int(request.get("max_concurrency") or 0)
        if not 1 <= concurrency <= 10:
            raise ApiError(
                "Invalid input error: Max concurrency of a recurring run must be at leas 1 and at "
                f"most 10. Received {concurrency}"
            )
        trigger = request.get("trigger") or {}
        cron = (trigger.get("cron_schedule") or {}).get("cron")
        if cron is not None:
            try:
                robfig_cron_parse(cron)
            except ValueError as error:
                raise ApiError(
                    "Invalid input error: Schedule cron is not a supported format"
                    f"(https://godoc.org/github.com/robfig/cron). Error: {error}"
                ) from None
        interval = (trigger.get("periodic_schedule") or {}).get("interval_second")
        if interval is not None and int(interval) < 1:
            raise ApiError(
                f"Invalid input error: Found invalid period schedule interval {interval}. "
                "Set at interval to least 1 second"
            )

    def _check_template(self, content: bytes) -> str:
        """The server's NewV2SpecTemplate: '' if accepted, else its 400 message."""
        protos = release_protos(self.server.state.server_version)
        self._platform: dict[str, Any] | None = None
        self._dropped = ""
        spec_seen = False
        try:
            documents = [d for d in yaml.safe_load_all(content) if d is not None]
        except yaml.YAMLError as error:
            return f"unable to decode yaml document: {error}"
        for document in documents:
            if isinstance(document, dict) and (
                "pipelineInfo" in document or "pipeline_info" in document
            ):  # isPipelineSpec
                if spec_seen:
                    return "multiple pipeline specs provided"
                spec_seen = True
                try:
                    spec = protos.parse(document, "ml_pipelines.PipelineSpec")
                except json_format.ParseError as error:
                    return f"invalid v2 pipeline spec: {error}"
                if spec.schema_version != "2.1.0":
                    return (
                        "KFP only supports schema version 2.1.0, but the pipeline spec has "
                        f"version {spec.schema_version}"
                    )
                if not spec.pipeline_info.name:
                    return "invalid v2 pipeline spec: name is empty"
            else:
                try:
                    platform = protos.parse(document, "ml_pipelines.PlatformSpec")
                except json_format.ParseError as error:
                    self._dropped = str(error)  # the server ignores the document silently
                    continue
                if "kubernetes" in platform.platforms:
                    if self._platform is not None:
                        return "multiple platform specs provided"
                    self._platform = document
        if not spec_seen:
            return "no pipeline spec is provided"
        return ""

    def _driver_error(self, request: dict[str, Any]) -> str:
        """The driver's strict parse of each executor's Kubernetes config, at run time."""
        state = self.server.state
        version_id = request.get("pipeline_version_reference", {}).get("pipeline_version_id", "")
        platform = state.platform_specs.get(version_id)
        if platform is None:
            return ""
        protos = release_protos(state.server_version)
        executors = platform["platforms"]["kubernetes"].get("deploymentSpec", {})
        for label, config in sorted(executors.get("executors", {}).items()):
            try:
                protos.parse(config, "kfp_kubernetes.KubernetesExecutorConfig")
            except json_format.ParseError as error:
                return f"driver: {label}: failed to unmarshal kubernetes config: {error}"
        return ""

    def _add_version(
        self, pipeline_id: str, name: str, description: str, content: bytes
    ) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": _new_id(),
            "display_name": name,
            "name": name,
            "description": description,
            "created_at": CREATED_AT,
        }
        self.server.state.versions[version["pipeline_version_id"]] = version
        self.server.state.uploads[version["pipeline_version_id"]] = content
        if getattr(self, "_platform", None) is not None:
            self.server.state.platform_specs[version["pipeline_version_id"]] = self._platform
        if getattr(self, "_dropped", ""):
            self.server.state.dropped_platform_specs[version["pipeline_version_id"]] = self._dropped
        return version


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FakeKfpState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeKfp:
    """Start with ``with FakeKfp(state) as fake:``; ``fake.url`` is the API host."""

    def __init__(self, state: FakeKfpState | None = None) -> None:
        self.state = state or FakeKfpState()
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> FakeKfp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
