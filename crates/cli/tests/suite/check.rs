//! `portcullis check` and a misconfigured `portcullis serve`, run as an operator runs them:
//! every problem reported in one run with the key it concerns, unset variables named, what
//! `serve` would trip over caught beforehand, no interpolated secret ever printed — and the
//! README's own example passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const SECRET: &str = "corp-s3cr3t-value-7c1f";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_clear();
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, yaml: &str) -> String {
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

#[test]
fn check_and_serve_never_print_an_interpolated_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        concat!(
            "master_key: ${SHORT_MASTER}\n",
            "providers:\n",
            "  corp:\n",
            "    kind: custom\n",
            "    api_key: ${CORP_KEY}\n",
            "    base_url: svc:${CORP_KEY}@llm.internal.example/v1\n",
            "    default_max_tokens: ${CORP_KEY}\n",
            "    headres: {x-team: platform}\n",
        ),
    );
    let env = [("CORP_KEY", SECRET), ("SHORT_MASTER", "tiny")];
    for args in [
        vec!["check", "--config", &file],
        vec!["serve", "--config", &file],
    ] {
        let out = run(&args, &env);
        let all = text(&out);
        assert!(!out.status.success(), "{args:?}: {all}");
        assert!(!all.contains(SECRET), "{args:?} printed the secret:\n{all}");
        assert!(
            !all.contains("tiny"),
            "{args:?} printed the master key:\n{all}"
        );
        assert!(
            !all.contains("invalid interpolated"),
            "{args:?} named no key:\n{all}"
        );
        for key in [
            "master_key:",
            "providers.corp.default_max_tokens:",
            "providers.corp: unknown field `headres`",
        ] {
            assert!(all.contains(key), "{args:?}: {key} missing in\n{all}");
        }
    }
    // With the type error and the typo fixed, the URL problem shows the file's text.
    let file = write(
        dir.path(),
        concat!(
            "providers:\n",
            "  corp:\n",
            "    kind: custom\n",
            "    api_key: ${CORP_KEY}\n",
            "    base_url: svc:${CORP_KEY}@llm.internal.example/v1\n",
        ),
    );
    for command in ["check", "serve"] {
        let out = run(&[command, "--config", &file], &env);
        let all = text(&out);
        assert!(!out.status.success());
        assert!(
            !all.contains(SECRET),
            "{command} printed the secret:\n{all}"
        );
        assert!(
            all.contains("providers.corp: `base_url` `svc:${CORP_KEY}@llm.internal.example/v1`"),
            "{command}:\n{all}"
        );
    }
}

#[test]
fn check_reports_every_problem_and_names_unset_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        concat!(
            "listen: nowhere\n",
            "log:\n  bodies: sometimes\n",
            "upstream:\n  connect_timeout_ms: soon\n",
            "providers:\n",
            "  openai:\n    api_key: ${OPENAI_API_KEY}\n",
            "  corp:\n    kind: custom\n    api_key: k\n",
            "    base_url: https://svc:${CORP_KEY}@llm.internal.example/v1\n",
            "routes:\n  r:\n    targets: [gpt-4o]\n",
            "semantic_cache:\n  embedder: {local: /nonexistent/models/minilm}\n",
            "approvals:\n  ttl: 1h\n  retention: 500ms\n",
        ),
    );
    let out = run(&["check", "--config", &file], &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    for expected in [
        "approvals.retention: must be from 1s to 3650d",
        "listen:",
        "log.bodies:",
        "upstream.connect_timeout_ms:",
        "providers.openai: an API key is required",
        "`${OPENAI_API_KEY}` is not set",
        "providers.corp.base_url: `${CORP_KEY}` is not set",
        "routes.r.targets[0]:",
        // What `serve` would trip over, in the same run as the file's own problems.
        "semantic_cache.embedder.local: the model directory `/nonexistent/models/minilm` does not exist",
    ] {
        assert!(all.contains(expected), "{expected} missing in\n{all}");
    }

    // Valid values, but a model directory `serve` could not load.
    let file = write(
        dir.path(),
        concat!(
            "providers:\n  openai:\n    api_key: k\n",
            "semantic_cache:\n  embedder: {local: /nonexistent/models/minilm}\n",
        ),
    );
    let out = run(&["check", "--config", &file], &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("semantic_cache.embedder.local: the model directory `/nonexistent/models/minilm` does not exist"),
        "{all}"
    );
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("config.json"), "{}").unwrap();
    let file = write(
        dir.path(),
        &format!(
            "providers:\n  openai:\n    api_key: k\nsemantic_cache:\n  embedder: {{local: {}}}\n",
            model.display()
        ),
    );
    let all = text(&run(&["check", "--config", &file], &[]));
    assert!(all.contains("tokenizer.json"), "{all}");
    assert!(all.contains("model.safetensors"), "{all}");

    // An unreadable (here: missing) file is one clear line.
    let out = run(&["check", "--config", "/nonexistent/portcullis.yaml"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot read /nonexistent/portcullis.yaml"));
}

/// The YAML example under "Configuration file" in the README.
fn readme_example() -> String {
    let readme = include_str!("../../../../README.md");
    let section = readme
        .split("### Configuration file")
        .nth(1)
        .expect("README has a Configuration file section");
    let start = section.find("```yaml\n").expect("a YAML example") + "```yaml\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_owned()
}

#[test]
fn the_readme_example_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), &readme_example());
    let out = run(
        &["check", "--config", &file],
        &[
            ("OPENAI_API_KEY", "sk-example"),
            ("ANTHROPIC_API_KEY", "sk-ant-example"),
            ("CF_ACCOUNT", "0123456789abcdef"),
            ("CF_AIG_TOKEN", "cf-example"),
            ("CORP_KEY", "corp-example"),
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains(": OK ("), "{all}");
}

#[test]
fn check_names_every_bad_tool_policy() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        concat!(
            "providers:\n  openai:\n    api_key: k\n",
            "tool_policies:\n",
            "  - {match: \"read_*\", output: untrusted}\n",
            "  - {match: \"send_[\", call: trusted_only}\n",
            "  - {match: send_money, call: sometimes, output: dubious}\n",
            "  - match: transfer\n",
            "    args:\n",
            "      iban: {pattern: \"DE[0-9\"}\n",
            "      amount: {min: 10, max: 1}\n",
            "      path: {under: reports}\n",
            "    roles: [root]\n",
            "  - {match: \"web__*\", output: quarantine}\n",
        ),
    );
    let out = run(&["check", "--config", &file], &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    for expected in [
        "tool_policies[1].match: `send_[` is not a valid glob",
        "tool_policies[2].call: unknown value `sometimes`, expected allow, block, trusted_only or approval",
        "tool_policies[2].output: unknown value `dubious`, expected trusted, untrusted or quarantine",
        "tool_policies[3].args.iban.pattern: `DE[0-9` is not a valid regular expression",
        "tool_policies[3].args.amount.min: 10 is above `max` 1",
        "tool_policies[3].args.path.under: `reports` must be an absolute path",
        "tool_policies[3].roles[0]: unknown role `root`",
    ] {
        assert!(all.contains(expected), "{expected} missing in\n{all}");
    }
    assert!(!all.contains("tool_policies[0]"), "{all}");

    // Typos in keys are named where they sit; a quarantine rule needs the quarantine model.
    let file = write(
        dir.path(),
        concat!(
            "providers:\n  openai:\n    api_key: k\n",
            "tool_policies:\n",
            "  - {match: \"web__*\", output: quarantine}\n",
            "  - {match: send_money, cal: block}\n",
            "  - {match: read_file, args: {path: {undre: /reports}}}\n",
        ),
    );
    let all = text(&run(&["check", "--config", &file], &[]));
    for expected in [
        "tool_policies[1]: unknown field `cal`",
        "tool_policies[2].args.path: unknown field `undre`",
    ] {
        assert!(all.contains(expected), "{expected} missing in\n{all}");
    }
    let file = write(
        dir.path(),
        concat!(
            "providers:\n  openai:\n    api_key: k\n",
            "tool_policies:\n",
            "  - {match: \"web__*\", output: quarantine}\n",
            "quarantine: {modle: openai/gpt-4o-mini}\n",
        ),
    );
    let all = text(&run(&["check", "--config", &file], &[]));
    assert!(all.contains("quarantine: unknown field `modle`"), "{all}");
    let file = write(
        dir.path(),
        concat!(
            "providers:\n  openai:\n    api_key: k\n",
            "tool_policies:\n",
            "  - {match: \"web__*\", output: quarantine}\n",
        ),
    );
    let all = text(&run(&["check", "--config", &file], &[]));
    assert!(
        all.contains(
            "quarantine.model: tool_policies[0] has `output: quarantine`, which needs `quarantine.model`"
        ),
        "{all}"
    );
}

/// The `tool_policies` example of the README passes `check`.
#[test]
fn the_readme_tool_policies_pass_check() {
    let readme = include_str!("../../../../README.md");
    let section = readme
        .split("### Agent guardrails: tool policies")
        .nth(1)
        .expect("README has a tool policies section");
    let start = section.find("```yaml\n").expect("a YAML example") + "```yaml\n".len();
    let end = start + section[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        &format!(
            "providers:\n  openai:\n    api_key: k\n{}",
            &section[start..end]
        ),
    );
    let out = run(&["check", "--config", &file], &[]);
    assert!(out.status.success(), "{}", text(&out));
}
