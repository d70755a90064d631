//! The one crate of Portcullis allowed `unsafe` code: small, documented wrappers over C
//! interfaces the gateway needs, each safe to call from anywhere. Every other crate forbids
//! `unsafe` (workspace lints); a test in this crate's suite checks that rule.
//!
//! - [`allocator`]: the global allocator (mimalloc) and how soon it gives freed memory back
//!   to the operating system.
//! - [`sandbox`]: running a child process with a restricted view of files, network,
//!   environment and resources (Landlock, namespaces, resource limits).

pub mod allocator;
pub mod sandbox;
