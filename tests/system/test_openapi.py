"""docs/openapi.yaml against the code: the file is OpenAPI 3.0.x, every $ref resolves,
every operation has responses, its examples fit its schemas, the routes in the
services' route tables (services/*/main.c, and the health routes of common/service.c)
are all in the spec and every /v1 operation of the spec is in a route table, every
error code the C code answers with is in the Error schema's enum, and every operation
states its security: the API key scopes its handler asks mc_auth_require or
mc_auth_optional for are the operation's `x-motcua-scopes`, with the bearer scheme
required (mc_auth_require), offered beside another credential (mc_auth_optional), or
absent (no key asked for).

Needs no build and no database. Needs PyYAML (Debian python3-yaml)."""
import glob
import os
import re
import unittest

try:
    import yaml
except ImportError:  # pragma: no cover - a clear message instead of an import error
    yaml = None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(ROOT, "docs", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# {"GET", "/v1/dossiers/{code}", dossier_lookup},
ROUTE = re.compile(r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"\s*,\s*\w+\s*\}')
ROUTE_FN = re.compile(r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"\s*,\s*(\w+)\s*\}')
# mc_http_reply_error(req, 404, "not_found", ...), helpers such as
# act_refuse(a, 409, "conflict", ...), verdicts like
# v->code = status == 422 ? "rule_violation" : "invalid";
# and error documents built by hand: json_pack("{s:{s:s, ...}}", "error", "code", "conflict", ...
# A brace list of string literals only (an array of names such as
# {"code", "procedure", "due_at"}, a table of pairs) builds no JSON: it is left out
# before "code", "..." pairs are looked for, so that a name listed after "code" is not
# taken for an error code.
REPLY_ERROR = re.compile(r'\b\w*(?:reply_error|_refuse)\(\s*[^,()]+,\s*[^,()]+,\s*"([a-z_]+)"', re.S)
CODE_ASSIGN = re.compile(r'->code\s*=\s*([^;]*"[^;]*);')
CODE_PACKED = re.compile(r'"code"\s*,\s*"([a-z_]+)"')
STRING_LIST = re.compile(r'\{\s*"[^"\\\n]*"(?:\s*,\s*"[^"\\\n]*")*\s*,?\s*\}')
LITERAL = re.compile(r'"([a-z_]+)"')
# mc_auth_require(auth, req, MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, fn, arg);
AUTH_CALL = re.compile(r'\bmc_auth_(require|optional)\s*\(([^;]*)\);', re.S)
SCOPE = re.compile(r'\bMC_SCOPE_([A-Z]+)\b')
SCOPE_NAMES = {"CITIZEN": "citizen_portal", "OFFICER": "officer", "INTEGRATOR": "integrator",
               "OPERATOR": "operator"}
BEARER = "bearerKey"


def route_table(paths):
    """{(METHOD, pattern)} from the route tables of the given C files."""
    routes = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            routes.update(ROUTE.findall(f.read()))
    return routes


def function_body(name, paths):
    """The text of the C function `name` (from its definition to the closing brace at
    the start of a line) in one of the files, or None."""
    start = re.compile(r'^\w[\w \t\*]*\b%s\s*\([^;{]*\)\s*\{' % re.escape(name), re.M)
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        m = start.search(text)
        if m:
            end = text.find("\n}", m.end())
            return text[m.start():end if end >= 0 else len(text)]
    return None


def handler_auth(service_dir):
    """{(METHOD, pattern): (mode, {scope names})} for the routes of one service: mode
    "require" or "optional" as the handler calls mc_auth_*, or None if it asks for no
    key."""
    with open(os.path.join(service_dir, "main.c"), encoding="utf-8") as f:
        routes = ROUTE_FN.findall(f.read())
    sources = sorted(glob.glob(os.path.join(service_dir, "*.c")))
    out = {}
    for method, pattern, fn in routes:
        body = function_body(fn, sources)
        if body is None:
            raise AssertionError("handler %s of %s %s not found in %s" % (fn, method, pattern,
                                                                          service_dir))
        call = AUTH_CALL.search(body)
        if not call:
            out[(method, pattern)] = (None, set())
        else:
            scopes = {SCOPE_NAMES[s] for s in SCOPE.findall(call.group(2))}
            out[(method, pattern)] = (call.group(1), scopes)
    return out


def pointer(doc, ref):
    """The value at a local JSON pointer ("#/a/b"), or KeyError."""
    if not ref.startswith("#/"):
        raise KeyError("not a local reference: " + ref)
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(ref)
    return node


def walk(node, where="#"):
    """Every (location, dict) in the document."""
    if isinstance(node, dict):
        yield where, node
        for k, v in node.items():
            yield from walk(v, "%s/%s" % (where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, "%s/%d" % (where, i))


class Checker:
    """Enough of OpenAPI 3.0 schema validation to check the spec's own examples."""

    def __init__(self, doc):
        self.doc = doc

    def errors(self, schema, value, where="example"):
        if "$ref" in schema:
            return self.errors(pointer(self.doc, schema["$ref"]), value, where)
        if value is None:
            if schema.get("nullable"):
                return []
            if "allOf" in schema or "oneOf" in schema:
                pass  # decided by the subschemas below
            elif "type" in schema or "enum" in schema:
                return ["%s: null but not nullable" % where]
        out = []
        for sub in schema.get("allOf", []):
            if value is None and schema.get("nullable"):
                break
            out += self.errors(sub, value, where)
        if "oneOf" in schema:
            fits = [s for s in schema["oneOf"] if not self.errors(s, value, where)]
            if len(fits) != 1:
                out.append("%s: fits %d of the oneOf schemas" % (where, len(fits)))
        if value is None:
            return out
        kind = schema.get("type")
        types = {"object": dict, "array": list, "string": str, "boolean": bool,
                 "integer": int, "number": (int, float)}
        if kind:
            ok = isinstance(value, types[kind])
            if kind in ("integer", "number") and isinstance(value, bool):
                ok = False
            if not ok:
                return out + ["%s: %r is not of type %s" % (where, value, kind)]
        if "enum" in schema and value not in schema["enum"]:
            out.append("%s: %r not in %r" % (where, value, schema["enum"]))
        if isinstance(value, str):
            if "pattern" in schema and not re.search(schema["pattern"], value):
                out.append("%s: %r does not match %s" % (where, value, schema["pattern"]))
            if len(value) < schema.get("minLength", 0):
                out.append("%s: %r is too short" % (where, value))
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                out.append("%s: %r is too long" % (where, value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                out.append("%s: %r below the minimum" % (where, value))
            if "maximum" in schema and value > schema["maximum"]:
                out.append("%s: %r above the maximum" % (where, value))
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name not in value:
                    out.append("%s: lacks required %r" % (where, name))
            for name, sub in schema.get("properties", {}).items():
                if name in value:
                    out += self.errors(sub, value[name], "%s.%s" % (where, name))
        if isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                out.append("%s: more than %d items" % (where, schema["maxItems"]))
            for i, item in enumerate(value):
                out += self.errors(schema.get("items", {}), item, "%s[%d]" % (where, i))
        return out


@unittest.skipIf(yaml is None, "PyYAML is missing: apt-get install python3-yaml")
class OpenApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SPEC, encoding="utf-8") as f:
            cls.doc = yaml.safe_load(f)
        cls.service_routes = route_table(glob.glob(os.path.join(ROOT, "services", "*", "main.c")))
        cls.health_routes = route_table([os.path.join(ROOT, "common", "service.c")])

    def operations(self):
        """(METHOD, path, operation) of every operation in the spec."""
        for path, item in self.doc["paths"].items():
            for method in METHODS:
                if method in item:
                    yield method.upper(), path, item[method]

    def test_is_openapi_3_0(self):
        self.assertRegex(str(self.doc.get("openapi")), r"^3\.0\.\d+$")
        self.assertTrue(self.doc["info"]["title"])
        self.assertTrue(self.doc["info"]["version"])
        self.assertTrue(self.doc["paths"])
        for where, node in walk(self.doc):
            if "$ref" in node:
                # OpenAPI 3.0 ignores anything beside a $ref: such members would be lost.
                self.assertEqual(set(node), {"$ref"}, "members beside $ref at " + where)

    def test_every_ref_resolves(self):
        refs = [(w, n["$ref"]) for w, n in walk(self.doc) if isinstance(n.get("$ref"), str)]
        self.assertTrue(refs)
        for where, ref in refs:
            with self.subTest(ref=ref, at=where):
                try:
                    target = pointer(self.doc, ref)
                except (KeyError, ValueError, IndexError):
                    self.fail("%s: unresolved $ref %s" % (where, ref))
                self.assertIsInstance(target, dict)

    def test_every_operation_has_responses(self):
        ops = list(self.operations())
        self.assertTrue(ops)
        ids = [op.get("operationId") for _, _, op in ops]
        self.assertEqual(len(ids), len(set(ids)), "operationIds are unique")
        for method, path, op in ops:
            with self.subTest(method=method, path=path):
                self.assertTrue(op.get("responses"), "no responses")
                for status in op["responses"]:
                    self.assertRegex(str(status), r"^([1-5][0-9]{2}|[1-5]XX|default)$")
                declared = set()
                params = self.doc["paths"][path].get("parameters", []) + op.get("parameters", [])
                for p in params:
                    p = pointer(self.doc, p["$ref"]) if "$ref" in p else p
                    if p["in"] == "path":
                        self.assertTrue(p.get("required"), "path parameters are required")
                        declared.add(p["name"])
                self.assertEqual(declared, set(re.findall(r"\{(\w+)\}", path)),
                                 "path parameters declared")

    def test_routes_of_the_services_are_in_the_spec(self):
        self.assertIn(("POST", "/v1/dossiers"), self.service_routes, "the regex still finds routes")
        spec = {(m, p) for m, p, _ in self.operations()}
        for route in sorted(self.service_routes | self.health_routes):
            with self.subTest(route=route):
                self.assertIn(route, spec, "route missing from docs/openapi.yaml")

    def test_v1_operations_of_the_spec_exist(self):
        for method, path, _ in self.operations():
            if path.startswith("/v1/"):
                with self.subTest(method=method, path=path):
                    self.assertIn((method, path), self.service_routes,
                                  "documented but in no services/*/main.c route table")

    def test_examples_fit_their_schemas(self):
        check = Checker(self.doc)
        seen = 0
        for where, node in walk(self.doc):
            schema = node.get("schema")
            if not isinstance(schema, dict):
                continue
            examples = []
            if "example" in node:
                examples.append(("example", node["example"]))
            for name, ex in (node.get("examples") or {}).items():
                ex = pointer(self.doc, ex["$ref"]) if "$ref" in ex else ex
                examples.append((name, ex.get("value")))
            for name, value in examples:
                seen += 1
                with self.subTest(at=where, example=name):
                    self.assertEqual(check.errors(schema, value), [])
        for name, schema in self.doc["components"]["schemas"].items():
            for where, node in walk(schema, "#/components/schemas/" + name):
                if "example" in node and "$ref" not in node:
                    seen += 1
                    with self.subTest(at=where):
                        self.assertEqual(check.errors(node, node["example"], where), [])
        self.assertGreater(seen, 20)

    def test_error_codes_of_the_code_are_documented(self):
        enum = set(self.doc["components"]["schemas"]["Error"]["properties"]["error"]
                   ["properties"]["code"]["enum"])
        used = set()
        for path in glob.glob(os.path.join(ROOT, "services", "*", "*.c")) + \
                glob.glob(os.path.join(ROOT, "common", "*.c")):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            used.update(REPLY_ERROR.findall(text))
            packed = CODE_PACKED.findall(STRING_LIST.sub("{}", text))
            used.update(packed)
            if path.endswith(os.path.join("routing", "action.c")):
                self.assertIn("conflict", packed, "the hand-built error document is still found")
            for expr in CODE_ASSIGN.findall(text):
                used.update(LITERAL.findall(expr))
        self.assertTrue({"invalid", "rule_violation", "idempotency_conflict", "conflict",
                         "forbidden", "unauthorized"} <= used,
                        "the regexes still find the codes")
        self.assertEqual(used - enum, set(), "error codes missing from the Error schema")

    def test_every_operation_states_its_security(self):
        schemes = self.doc["components"]["securitySchemes"]
        self.assertEqual(schemes[BEARER]["type"], "http")
        self.assertEqual(schemes[BEARER]["scheme"], "bearer")
        known = set(SCOPE_NAMES.values())
        for method, path, op in self.operations():
            with self.subTest(method=method, path=path):
                self.assertIn("security", op, "no security requirement (use [] for none)")
                for requirement in op["security"]:
                    for name, scopes in requirement.items():
                        self.assertIn(name, schemes, "unknown security scheme")
                        self.assertEqual(scopes, [], "OpenAPI 3.0: scopes of http and apiKey "
                                                     "schemes go in x-motcua-scopes")
                self.assertLessEqual(set(op.get("x-motcua-scopes", [])), known)

    def test_scopes_match_the_handlers(self):
        auth = {}
        for service_dir in sorted(glob.glob(os.path.join(ROOT, "services", "*"))):
            if os.path.exists(os.path.join(service_dir, "main.c")):
                auth.update(handler_auth(service_dir))
        self.assertIn(("POST", "/v1/dossiers/{code}/actions"), auth, "the parser finds handlers")
        self.assertEqual(auth[("POST", "/v1/dossiers/{code}/actions")], ("require", {"officer"}),
                         "the parser reads scopes")
        ops = {(m, p): op for m, p, op in self.operations()}
        for route, (mode, scopes) in sorted(auth.items()):
            op = ops.get(route)
            if op is None:
                continue  # reported by test_routes_of_the_services_are_in_the_spec
            with self.subTest(route=route):
                requirements = op.get("security", [])
                with_key = [r for r in requirements if BEARER in r]
                self.assertEqual(set(op.get("x-motcua-scopes", [])), scopes,
                                 "x-motcua-scopes differ from the handler's mc_auth_%s" % mode)
                if mode is None:
                    self.assertEqual(with_key, [], "the handler asks for no API key")
                elif mode == "require":
                    self.assertTrue(requirements, "the handler requires an API key")
                    self.assertEqual(len(with_key), len(requirements),
                                     "the handler requires an API key in every case")
                else:
                    self.assertTrue(with_key, "the handler accepts an API key")
                    self.assertLess(len(with_key), len(requirements),
                                    "the handler also accepts another credential")


if __name__ == "__main__":
    unittest.main()
