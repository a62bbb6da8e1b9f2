//! Reads each wasm module the page serves and checks it against the features of the engines
//! that may be given it (js/worker/modules.js chooses):
//! - `pkg/` and `pkg-threads/` go to every engine, Safari's included, which has no relaxed
//!   SIMD: WebAssembly 2.0 only (SIMD, bulk memory, reference types, ...), plus shared memory
//!   and atomics for the threaded one. A relaxed-SIMD instruction here would make Safari
//!   refuse the module whole (as burn 0.20's web example was refused on iOS).
//! - `pkg-fma/` and `pkg-threads-fma/` go only where the worker's relaxed-SIMD probe
//!   validates: they must validate with relaxed SIMD, and must use it (else the twin is the
//!   plain module under another name).
//!
//! Usage: `wasm-feature-check ROOT` (the repository, after scripts/build-wasm.sh). Exits
//! non-zero, naming the module and the first instruction refused, if any check fails.
use std::path::Path;
use std::process::ExitCode;

use wasmparser::{Validator, WasmFeatures};

/// What Chromium (91+), Firefox (89+) and Safari (16.4+) all validate.
const EVERY_ENGINE: WasmFeatures = WasmFeatures::WASM2;

/// One module's rule: the features it may use (and in words), and whether it must use
/// relaxed SIMD.
struct Rule {
    dir: &'static str,
    allowed: WasmFeatures,
    described: &'static str,
    needs_relaxed_simd: bool,
}

const RULES: [Rule; 4] = [
    Rule {
        dir: "pkg",
        allowed: EVERY_ENGINE,
        described: "WebAssembly 2.0, no relaxed SIMD",
        needs_relaxed_simd: false,
    },
    Rule {
        dir: "pkg-threads",
        allowed: EVERY_ENGINE.union(WasmFeatures::THREADS),
        described: "WebAssembly 2.0 and threads, no relaxed SIMD",
        needs_relaxed_simd: false,
    },
    Rule {
        dir: "pkg-fma",
        allowed: EVERY_ENGINE.union(WasmFeatures::RELAXED_SIMD),
        described: "WebAssembly 2.0 and relaxed SIMD, which it uses",
        needs_relaxed_simd: true,
    },
    Rule {
        dir: "pkg-threads-fma",
        allowed: EVERY_ENGINE
            .union(WasmFeatures::THREADS)
            .union(WasmFeatures::RELAXED_SIMD),
        described: "WebAssembly 2.0, threads and relaxed SIMD, which it uses",
        needs_relaxed_simd: true,
    },
];

fn validates(bytes: &[u8], features: WasmFeatures) -> Result<(), String> {
    Validator::new_with_features(features)
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// The rule's verdict on a module's bytes: Ok with a line to print, or what is wrong.
fn check(rule: &Rule, bytes: &[u8]) -> Result<String, String> {
    validates(bytes, rule.allowed).map_err(|error| {
        format!(
            "{} uses a feature its engines may not have: {error}",
            rule.dir
        )
    })?;
    let uses_relaxed_simd =
        validates(bytes, rule.allowed.difference(WasmFeatures::RELAXED_SIMD)).is_err();
    if rule.needs_relaxed_simd && !uses_relaxed_simd {
        return Err(format!(
            "{} has no relaxed-SIMD instruction: the FMA twin is not built with fma",
            rule.dir
        ));
    }
    Ok(format!("{}: validates with {}", rule.dir, rule.described))
}

fn main() -> ExitCode {
    let root = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let mut failed = false;
    for rule in &RULES {
        let path = Path::new(&root).join(rule.dir).join("resnet_web_bg.wasm");
        let verdict = std::fs::read(&path)
            .map_err(|error| {
                format!(
                    "{}: {error} (build it with scripts/build-wasm.sh)",
                    path.display()
                )
            })
            .and_then(|bytes| {
                check(rule, &bytes).map(|line| format!("{line} ({} bytes)", bytes.len()))
            });
        match verdict {
            Ok(line) => println!("[wasm features] {line}"),
            Err(problem) => {
                eprintln!("[wasm features] {problem}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module of one function: three i32x4.splat(0), then `last` (an opcode after 0xfd,
    /// as two LEB128 bytes), then end. 0x85 0x02 is f32x4.relaxed_madd; 0xe4 0x01 is f32x4.add
    /// of two of them (the third is dropped first).
    fn module(last: [u8; 2], drop_one: bool) -> Vec<u8> {
        let mut body = vec![0x00];
        for _ in 0..3 {
            body.extend([0x41, 0x00, 0xfd, 0x11]);
        }
        if drop_one {
            body.push(0x1a);
        }
        body.extend([0xfd, last[0], last[1], 0x0b]);
        let mut code = vec![0x01, body.len() as u8];
        code.extend(body);
        let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        bytes.extend([
            0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00,
        ]);
        bytes.extend([0x0a, code.len() as u8]);
        bytes.extend(code);
        bytes
    }

    #[test]
    fn a_relaxed_simd_instruction_fails_the_plain_modules_and_passes_the_fma_twins() {
        let relaxed = module([0x85, 0x02], false);
        for rule in &RULES {
            let verdict = check(rule, &relaxed);
            assert_eq!(
                verdict.is_ok(),
                rule.needs_relaxed_simd,
                "{}: {verdict:?}",
                rule.dir
            );
        }
        assert!(check(&RULES[0], &relaxed).unwrap_err().contains("relaxed"));
    }

    #[test]
    fn plain_simd_passes_the_plain_modules_and_fails_the_fma_twins() {
        let plain = module([0xe4, 0x01], true);
        for rule in &RULES {
            let verdict = check(rule, &plain);
            assert_eq!(
                verdict.is_ok(),
                !rule.needs_relaxed_simd,
                "{}: {verdict:?}",
                rule.dir
            );
        }
        assert!(
            check(&RULES[2], &plain)
                .unwrap_err()
                .contains("no relaxed-SIMD instruction")
        );
    }
}
