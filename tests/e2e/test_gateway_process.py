"""The binary as a user runs it: zero-config start, a generated master key kept out of the log,
the log flushed on SIGTERM, and `portcullis check` reporting configuration problems by key."""

import os
import stat
import subprocess
import time

import httpx

from conftest import ROOT, _bin, start_gateway, stop_gateway


def test_generated_master_key_is_kept_out_of_the_log_and_works(mock_url, tmp_path):
    """Without a terminal, a generated master key goes to an owner-only file whose path is
    logged, never to the output a log collector keeps."""
    gw = start_gateway(mock_url, tmp_path, {"PORTCULLIS_MASTER_KEY": ""})
    key_file = tmp_path / "portcullis-master-key"
    try:
        for _ in range(100):
            if key_file.exists() and key_file.read_text().strip():
                break
            time.sleep(0.05)
        key = key_file.read_text().strip()
        assert key.startswith("pk-master-")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        log = (tmp_path / "gateway.log").read_text()
        assert key not in log
        assert "portcullis-master-key" in log, "the log says where the key was written"
        r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        assert (tmp_path / "portcullis.db").exists(), "the default database is a SQLite file in the working directory"
    finally:
        assert stop_gateway(gw) == 0
    # Restarted on the same database: no new key is generated and the first one still works.
    os.rename(tmp_path / "gateway.log", tmp_path / "first.log")
    key_file.unlink()
    gw = start_gateway(mock_url, tmp_path, {"PORTCULLIS_MASTER_KEY": ""})
    try:
        r = httpx.get(f"{gw.url}/v1/models", headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200
    finally:
        assert stop_gateway(gw) == 0
    assert "pk-master-" not in (tmp_path / "gateway.log").read_text()
    assert not key_file.exists()


def test_sigterm_flushes_every_record(mock_url, tmp_path):
    gw = start_gateway(mock_url, tmp_path)
    with httpx.Client() as http:
        for i in range(30):
            r = http.post(f"{gw.url}/v1/chat/completions", headers={"authorization": "Bearer e2e-master-key-0123456789"},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"m{i}"}]})
            assert r.status_code == 200
    assert stop_gateway(gw) == 0
    gw = start_gateway(mock_url, tmp_path)
    try:
        assert len(gw.logs()) == 30
    finally:
        stop_gateway(gw)


def test_check_reports_problems_by_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: nowhere\nproviders:\n  openai: {}\n  x:\n    kind: martian\n")
    r = subprocess.run([_bin("PORTCULLIS_BIN", "portcullis"), "check", "--config", str(bad)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1
    assert "listen:" in r.stderr
    assert "providers.openai: an API key is required" in r.stderr
    assert "providers.x.kind: unknown provider kind `martian`" in r.stderr

    good = tmp_path / "good.yaml"
    good.write_text("providers:\n  openai:\n    api_key: ${OPENAI_KEY_FOR_CHECK}\n")
    r = subprocess.run([_bin("PORTCULLIS_BIN", "portcullis"), "check", "--config", str(good)],
                       capture_output=True, text=True, env={**os.environ, "OPENAI_KEY_FOR_CHECK": "sk-1"})
    assert r.returncode == 0, r.stderr
    assert "OK (1 providers" in r.stdout
