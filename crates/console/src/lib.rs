//! The web console's parts that need no gateway state.
//!
//! - [`assets`]: the console's pages, scripts and styles, embedded in the binary at build time
//!   (nothing fetched at run time, no front-end toolchain), served from a versioned path with
//!   long-lived caching, gzip, strong `ETag`s and a strict Content-Security-Policy;
//! - [`session`]: the console session's secret token and its digest (all the database keeps),
//!   the anti-CSRF token derived from it, the cookie that carries it, and the same-origin check
//!   every state-changing console call must pass.
//!
//! The gateway's `console` module wires these to the admin API and the identity directory.

pub mod assets;
pub mod session;
