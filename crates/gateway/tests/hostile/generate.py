#!/usr/bin/env python3
# Writes corpus.json, the hostile-input corpus tests/suite/hostile.rs runs: templates expanded by the
# test itself. Run from this directory after changing a group: python3 generate.py
import json
CTRL = ["\u0000", "\u0001", "\u0007", "\u0008", "\t", "\n", "\r", "\u001b", "\u001f", "\u007f"]
CHAT = "/v1/chat/completions"
MSGS = "/v1/messages"
EMB = "/v1/embeddings"
def chat(model="gpt-4o-mini", content="hi"):
    return {"model": model, "messages": [{"role": "user", "content": content}]}
def msgs(model="claude-sonnet-4-5", content="hi"):
    return {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": content}]}
T = []
def t(group, **kw):
    kw["group"] = group
    T.append(kw)

# NUL and control characters in the model name: a 400 before routing.
for path, body in [(CHAT, chat("gpt{v}4o")), (MSGS, msgs("claude{v}x")), (EMB, {"model": "text-embedding-3-small{v}", "input": "x"})]:
    t("control_in_model", method="POST", path=path, body=body, vars=CTRL, expect="400")
t("control_in_model", method="POST", path=CHAT, body=chat("{v}"), vars=["\u0000", "\u0000gpt-4o-mini", "gpt-4o-mini\u0000"], expect="400")
# NUL and control characters in metadata (JSON-escaped in the header): stored and answered.
t("control_in_metadata", method="POST", path=CHAT, body=chat(), headers={"x-portcullis-metadata": "{v}"},
  vars=[json.dumps({"k": "a" + c + "b"}) for c in CTRL] + [json.dumps({"a" + c: 1}) for c in ["\u0000", "\u0001", "\u001f"]], expect="200")
t("control_in_metadata", method="POST", path=MSGS, body=msgs(), headers={"cf-aig-metadata": "{v}"},
  vars=[json.dumps({"k": c}) for c in ["\u0000", "\u007f"]], expect="200")
# NUL and control characters in messages: passed on.
t("control_in_messages", method="POST", path=CHAT, body=chat(content="x{v}y"), vars=CTRL, expect="200")
t("control_in_messages", method="POST", path=MSGS, body=msgs(content="x{v}y"), vars=CTRL, expect="200")
t("control_in_messages", method="POST", path=CHAT, raw='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"raw{v}byte"}]}', vars=["\u0000", "\u0001", "\n", "\u001f"], expect="400")
# Control characters and oversized values in headers, sent byte for byte.
raw_head = "POST " + CHAT + " HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {auth}\r\ncontent-type: application/json\r\n{v}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
t("control_in_headers", raw_http=raw_head, body=chat(), vars=[
  "x-portcullis-metadata: {\"k\":\"a\u0000\"}", "x-portcullis-session-id: a\u0000b", "x-portcullis-agent: \u0000",
  "x-portcullis-cache-ttl: 6\u00000", "x-portcullis-provider-key: a\u0000", "x-portcullis-session-id: a\u0001b",
  "x-portcullis-agent: a\u007fb", "x-portcullis-metadata: \u0007"], expect="400|200")
t("control_in_headers", raw_http="POST " + CHAT + " HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {auth}{v}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n",
  body=chat(), vars=["\u0000", "\u0001x", " \u007f"], expect="400|401")
# NUL in admin filters.
for f in ["model", "provider", "route", "subject", "user", "team", "key"]:
    t("nul_in_admin_filters", method="GET", path="/admin/logs?" + f + "={v}", vars=["%00", "a%00b", "%00%00"], expect="400")
for f in ["provider", "model", "route", "key", "user", "team"]:
    t("nul_in_admin_filters", method="GET", path="/admin/usage?" + f + "={v}", vars=["%00", "x%00"], expect="400")
for f in ["user", "team", "service_account", "cursor"]:
    t("nul_in_admin_filters", method="GET", path="/admin/keys?" + f + "=%00", expect="400")
t("nul_in_admin_filters", method="GET", path="/admin/logs?model={v}", vars=["%01", "%1F", "%7F", "%FF", "%C3%28", "%E2%80%AE"], expect="200")
# NUL and bytes that are not UTF-8 in admin path segments.
for method, path in [("GET", "/admin/teams/{v}"), ("DELETE", "/admin/teams/{v}"), ("POST", "/admin/teams/{v}/members"),
                     ("DELETE", "/admin/teams/red/members/{v}"), ("GET", "/admin/users/{v}"), ("PATCH", "/admin/users/{v}"),
                     ("DELETE", "/admin/users/{v}"), ("GET", "/admin/keys/{v}"), ("DELETE", "/admin/keys/{v}"),
                     ("POST", "/admin/keys/{v}/rotate"), ("DELETE", "/admin/provider-keys/{v}"),
                     ("DELETE", "/admin/service-accounts/{v}"), ("POST", "/admin/service-accounts/{v}/clients")]:
    t("nul_in_admin_paths", method=method, path=path, body={}, vars=["%00", "a%00b", "%FF", "%C0%80"], expect="400")
# NUL in admin body fields.
for path, body in [("/admin/teams", {"name": "{v}"}), ("/admin/teams", {"id": "t{v}", "name": "x"}),
                   ("/admin/teams", {"name": "x", "metadata": {"k": "{v}"}}), ("/admin/users", {"email": "a{v}@example.com"}),
                   ("/admin/users", {"name": "{v}"}), ("/admin/users", {"name": "x", "teams": ["{v}"]}),
                   ("/admin/keys", {"name": "{v}"}), ("/admin/keys", {"name": "k", "team": "{v}"}),
                   ("/admin/keys", {"name": "k", "models": ["{v}"]}), ("/admin/keys", {"name": "k", "metadata": {"{v}": 1}}),
                   ("/admin/provider-keys", {"provider": "openai", "alias": "{v}", "secret": "sk-x"}),
                   ("/admin/provider-keys", {"provider": "openai{v}", "secret": "sk-x"}),
                   ("/admin/service-accounts", {"name": "{v}"}), ("/admin/teams/red/members", {"user": "{v}"})]:
    t("nul_in_admin_bodies", method="POST", path=path, body=body, vars=["\u0000", "a\u0000b"], expect="400")
# Malformed JSON bodies.
MAL = ["", "{", "}", "[", "null", "true", "1", "\"str\"", "[]", "{\"model\":", "{\"model\":\"gpt-4o-mini\",}",
       "{\"model\":\"gpt-4o-mini\"} trailing", "{'model':'x'}", "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}",
       "\ufeff{\"model\":\"gpt-4o-mini\",\"messages\":[]}", "{\"model\":NaN}", "{\"model\":1e999999}",
       "[" * 5000, "{\"a\":" * 5000, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-1}",
       "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":18446744073709551616}",
       "{\"model\":\"gpt-4o-mini\",\"messages\":\"x\"}", "{\"model\":[\"gpt-4o-mini\"],\"messages\":[]}",
       "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}",
       "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}"]
for path in [CHAT, MSGS]:
    t("malformed_json", method="POST", path=path, raw="{v}", vars=MAL, expect="400")
t("malformed_json", method="POST", path=EMB, raw="{v}", vars=MAL[:13], expect="400")
t("malformed_json", method="POST", path=CHAT, raw_bytes_hex="{v}", vars=["7b226d6f64656c223a22ff227d", "c0", "fffe7b7d",
  "7b226d6f64656c223a226770742d346f2d6d696e69222c226d65737361676573223a5b7b22726f6c65223a2275736572222c22636f6e74656e74223a2278ed a080227d5d7d".replace(" ", "")], expect="400")
# Duplicate keys: refused, never a parser differential.
DUP = ["{\"model\":\"gpt-4o-mini\",\"model\":\"openai/mock-error-500\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
       "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"messages\":[]}",
       "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"role\":\"system\",\"content\":\"x\"}]}",
       "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"content\":\"y\"}]}",
       "{\"model\":\"gpt-4o-mini\",\"stream\":false,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
       "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1,\"max_tokens\":2}"]
t("duplicate_keys", method="POST", path=CHAT, raw="{v}", vars=DUP, expect="400")
t("duplicate_keys", method="POST", path=MSGS, raw="{v}", vars=[d.replace("gpt-4o-mini", "claude-sonnet-4-5").replace("\"messages\"", "\"max_tokens\":16,\"messages\"", 1) for d in DUP[:4]], expect="400")
# The metadata header is JSON too: a repeated key is refused like one in a body.
t("duplicate_keys", method="POST", path=CHAT, body=chat(), headers={"x-portcullis-metadata": "{\"a\":1,\"a\":2}"}, expect="400")
for path, raw in [("/admin/teams", "{\"name\":\"a\",\"name\":\"b\"}"), ("/admin/users", "{\"name\":\"a\",\"name\":\"b\"}"),
                  ("/admin/keys", "{\"name\":\"a\",\"name\":\"b\"}"), ("/admin/service-accounts", "{\"name\":\"a\",\"name\":\"b\"}"),
                  # Inside free-form maps, where a typed parse alone would keep the last value.
                  ("/admin/keys", "{\"name\":\"a\",\"metadata\":{\"x\":1,\"x\":2}}"),
                  ("/admin/teams", "{\"name\":\"a\",\"metadata\":{\"x\":\"1\",\"x\":\"2\"}}")]:
    t("duplicate_keys", method="POST", path=path, raw=raw, expect="400")
# Wrong JSON types in admin bodies.
WRONG = ["[]", "\"team\"", "1", "null", "true", "{\"name\":1}", "{\"name\":[\"x\"]}", "{\"name\":{}}", "{\"name\":null}", "{\"name\":\"x\",\"metadata\":\"m\"}"]
for path in ["/admin/teams", "/admin/users", "/admin/keys", "/admin/service-accounts", "/admin/provider-keys"]:
    t("wrong_types_in_admin_bodies", method="POST", path=path, raw="{v}", vars=WRONG[:5], expect="400")
t("wrong_types_in_admin_bodies", method="POST", path="/admin/teams", raw="{v}", vars=WRONG[5:], expect="400")
t("wrong_types_in_admin_bodies", method="POST", path="/admin/users", raw="{v}", vars=["{\"teams\":\"red\"}", "{\"role\":1}", "{\"email\":5}", "{\"email\":\"not-an-address\"}", "{\"password\":[]}", "{\"role\":\"owner\"}"], expect="400")
t("wrong_types_in_admin_bodies", method="POST", path="/admin/keys", raw="{v}", vars=["{\"name\":\"k\",\"models\":\"gpt\"}", "{\"name\":\"k\",\"expires_at\":5}", "{\"name\":\"k\",\"expires_at\":\"tomorrow\"}",
    "{\"name\":\"k\",\"limits\":[]}", "{\"name\":\"k\",\"limits\":{\"requests_per_minute\":-1}}", "{\"name\":\"k\",\"budget\":{\"usd\":\"ten\"}}", "{\"name\":\"k\",\"allow_custom_cost\":\"yes\"}", "{\"name\":\"k\",\"unknown\":1}"], expect="400")
t("wrong_types_in_admin_bodies", method="PATCH", path="/admin/users/{v}", raw="[]", vars=["nobody"], expect="400|404")
# Option headers: oversized and not ASCII.
OPTS = ["x-portcullis-metadata", "x-portcullis-collect-log", "x-portcullis-cache-ttl", "x-portcullis-skip-cache", "x-portcullis-cache-key",
        "x-portcullis-request-timeout", "x-portcullis-max-attempts", "x-portcullis-retry-delay", "x-portcullis-backoff",
        "x-portcullis-custom-cost", "x-portcullis-provider-key", "cf-aig-metadata", "cf-aig-cache-ttl", "cf-aig-skip-cache",
        "cf-aig-request-timeout", "cf-aig-max-attempts", "cf-aig-collect-log"]
for h in OPTS:
    t("option_headers", method="POST", path=CHAT, body=chat(), headers={h: "{v}"}, vars=["caf\u00e9", "\u00ff"], expect="400")
t("option_headers", method="POST", path=CHAT, body=chat(), headers={"x-portcullis-metadata": "{v}"},
  vars=[json.dumps({"k": "x" * 5000}), json.dumps({str(i): i for i in range(17)}), json.dumps({"a": {"b": 1}}), "not json", "[1]"], expect="400")
for h, vals in [("x-portcullis-max-attempts", ["0", "6", "-1", "99999999999999999999", "1.5"]),
                ("x-portcullis-request-timeout", ["-1", "abc", "1x", "99999999999999999999ms"]),
                ("x-portcullis-retry-delay", ["-5", "never"]), ("x-portcullis-backoff", ["sideways", "1"]),
                ("x-portcullis-collect-log", ["maybe", "2"]), ("x-portcullis-skip-cache", ["perhaps"])]:
    t("option_headers", method="POST", path=CHAT, body=chat(), headers={h: "{v}"}, vars=vals, expect="400")
t("option_headers", method="POST", path=CHAT, body=chat(), headers={"x-portcullis-cache-key": "{v}"}, vars=["k" * 10000], expect="400|431")
# Custom cost: accepted, malformed refused; never free unless the operator allows it.
t("custom_cost", method="POST", path=CHAT, body=chat(), headers={"x-portcullis-custom-cost": "{v}"},
  vars=["{\"per_token_in\":0,\"per_token_out\":0}", "{\"per_token_in\":0.000001,\"per_token_out\":0.000002}"], expect="200")
t("custom_cost", method="POST", path=CHAT, body=chat(), headers={"x-portcullis-custom-cost": "{v}"},
  vars=["{\"per_token_in\":-1,\"per_token_out\":0}", "{\"per_token_in\":\"free\"}", "{\"per_token_in\":1e400,\"per_token_out\":0}", "not json", "[]",
        "{\"per_token_in\":0,\"per_token_out\":0,\"per_token_in\":1}", "{\"per_token_in\":NaN,\"per_token_out\":0}", "{}"], expect="400")
t("custom_cost", method="POST", path=CHAT, body=chat(), headers={"cf-aig-custom-cost": "{v}"}, vars=["{\"per_token_in\":-1,\"per_token_out\":0}"], expect="400")
# Bearer forms.
t("bearer_forms", method="POST", path=CHAT, body=chat(), auth="none", headers={"authorization": "{v}"},
  vars=["bearer {master}", "BEARER {master}", "BeArEr {master}"], expect="200")
t("bearer_forms", method="POST", path=CHAT, body=chat(), auth="none", headers={"authorization": "{v}"},
  vars=["Bearer", "Bearer ", "Bearer  ", "{master}", "Basic {master}", "Bearer {master}x", "Bearer x{master}", "Token {master}",
        "Bearer pk-", "Bearer pk-" + "a" * 4000, "Bearer \u00e9\u00e9", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln", "Bearer a.b.c"], expect="401")
t("bearer_forms", method="POST", path=CHAT, body=chat(), auth="none", headers={"x-api-key": "{v}"}, vars=["wrong", "", "{master} "], expect="401|200")
t("bearer_forms", method="GET", path="/admin/logs", auth="none", headers={"authorization": "{v}"}, vars=["Bearer wrong", "Bearer", "Basic eDp5"], expect="401")
# Provider-key aliases: unknown and someone else's get one answer.
t("provider_key_aliases", method="POST", path=CHAT, body=chat(), auth="red", headers={"x-portcullis-provider-key": "{v}"},
  vars=["blue-openai", "nope", "BLUE-OPENAI", "blue-openai ", "a" * 300], expect="400")
t("provider_key_aliases", method="POST", path=CHAT, body=chat(), auth="red", headers={"x-portcullis-provider-key": "{v}"}, vars=["red-openai"], expect="200")
t("provider_key_aliases", method="POST", path=CHAT, body=chat(), auth="blue", headers={"x-portcullis-provider-key": "{v}"}, vars=["red-openai", "nope"], expect="400")
# Absurd cache TTLs: bounded.
for h in ["x-portcullis-cache-ttl", "cf-aig-cache-ttl"]:
    t("cache_ttl", method="POST", path=CHAT, body=chat(), headers={h: "{v}"},
      vars=["99999999999", "18446744073709551616", "-1", "1e9", "10y", "1000000d", "NaN", "abc", "60 s", "9999999h"], expect="400")
    t("cache_ttl", method="POST", path=CHAT, body=chat(), headers={h: "{v}"}, vars=["60", "3600"], expect="200")
    t("cache_ttl", method="POST", path=CHAT, body=chat(), headers={h: "{v}"}, vars=["0", "0s"], expect="400")

json.dump({"description": "Hostile inputs the gateway must answer precisely: each template expands once per value in `vars` (`{v}` replaced in path, headers, body or raw text). `expect` is a status, a class (`4xx`) or alternatives (`400|404`). See tests/suite/hostile.rs.", "templates": T},
          open("corpus.json", "w"), indent=1, ensure_ascii=True)
n = sum(len(x.get("vars", [None])) for x in T)
print(len(T), n)
