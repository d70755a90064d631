//! The gateway crate's layering rule, as ARCHITECTURE.md writes it down ("Layers of the
//! gateway crate"): every module of `src/` sits in exactly one layer, and a module refers only
//! to modules of lower layers — so the crate has no cycles, handlers are never called back by
//! what they use, and the dispatcher and the relay can be tested without the rest.

use std::collections::BTreeMap;

const ARCHITECTURE: &str = include_str!("../../../../ARCHITECTURE.md");

/// The layer table from ARCHITECTURE.md: module → layer number.
fn layers() -> BTreeMap<String, usize> {
    let start = ARCHITECTURE
        .find("```layers")
        .expect("ARCHITECTURE.md has a ```layers block");
    let block = &ARCHITECTURE[start + "```layers".len()..];
    let block = &block[..block.find("```").expect("the layers block ends")];
    let mut table = BTreeMap::new();
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (number, modules) = line.split_once(':').expect("`N: module module …`");
        let number: usize = number.trim().parse().expect("a layer number");
        for module in modules.split_whitespace() {
            assert!(
                table.insert(module.to_owned(), number).is_none(),
                "`{module}` is listed twice"
            );
        }
    }
    table
}

/// The gateway modules a source file refers to (`crate::x`, `crate::{x, y}`), outside
/// comments.
fn references(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                let end = list.find('}').unwrap_or(list.len());
                for item in list[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.push(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found
}

#[test]
fn every_module_refers_only_to_lower_layers() {
    let table = layers();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            modules.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(modules.len() > 10, "the gateway's modules were found");
    let mut problems = Vec::new();
    for (module, source) in &modules {
        let Some(&own) = table.get(module) else {
            problems.push(format!(
                "`{module}` is not in ARCHITECTURE.md's layers block"
            ));
            continue;
        };
        for used in references(source) {
            // Items of the crate root (`crate::AppState`) and the module itself are fine.
            if used == *module || used.starts_with(char::is_uppercase) {
                continue;
            }
            match table.get(&used) {
                Some(&layer) if layer < own => {}
                Some(&layer) => problems.push(format!(
                    "`{module}` (layer {own}) uses `{used}` (layer {layer})"
                )),
                None => problems.push(format!("`{module}` uses `{used}`, which is in no layer")),
            }
        }
    }
    for listed in table.keys() {
        if !modules.iter().any(|(m, _)| m == listed) {
            problems.push(format!(
                "ARCHITECTURE.md lists `{listed}`, which is not a module"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reference_scanner_sees_both_import_forms() {
    let refs = references(
        "use crate::a::B;\n// crate::commented\nuse crate::{c, d::E};\nlet x = crate::f::g();",
    );
    assert_eq!(refs, ["a", "c", "d", "f"]);
}

#[test]
fn only_admin_scope_decides_who_is_an_admin() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_none_or(|e| e != "rs") || name == "admin_scope" {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains(".is_admin()") || code.contains("has_scope(\"admin\")") {
                offenders.push(format!("{name}.rs:{}: {code}", n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the admin API's reach is admin_scope's to decide:\n{}",
        offenders.join("\n")
    );
}
