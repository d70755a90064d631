//! The MCP tool pins of `portcullis_mcp::pins` kept in the database ([`StoreLedger`] over
//! `portcullis_store::mcp_pins`), and [`follow`], which reloads them in the background at the
//! identity poll interval so that an approval made on one replica takes effect on every other.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::clock::now_ms;
use portcullis_identity::Directory;
use portcullis_mcp::pins::{Key, PinError, PinLedger, Pins, Seen};
use portcullis_store::McpPinStore;
use portcullis_store::mcp_pins::SeenTool;

/// How often pins are reloaded when there is no identity directory to take the interval from.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The pins as the database keeps them.
#[derive(Debug)]
pub struct StoreLedger(pub Arc<dyn McpPinStore>);

#[async_trait::async_trait]
impl PinLedger for StoreLedger {
    async fn observe(
        &self,
        server: &str,
        scope: &str,
        seen: &[Seen<'_>],
    ) -> Result<HashMap<String, String>, PinError> {
        let tools: Vec<SeenTool<'_>> = seen
            .iter()
            .map(|s| SeenTool {
                tool: s.tool,
                fingerprint: s.fingerprint,
                definition: s.definition,
            })
            .collect();
        let pinned = self
            .0
            .observe_tools(server, scope, &tools, now_ms())
            .await
            .map_err(|e| PinError(e.to_string()))?;
        Ok(pinned
            .into_iter()
            .map(|p| (p.tool, p.fingerprint))
            .collect())
    }

    async fn load(&self) -> Result<HashMap<Key, HashMap<String, String>>, PinError> {
        let pinned = self
            .0
            .pinned_tools()
            .await
            .map_err(|e| PinError(e.to_string()))?;
        let mut all: HashMap<Key, HashMap<String, String>> = HashMap::new();
        for p in pinned {
            all.entry((p.server, p.scope))
                .or_default()
                .insert(p.tool, p.fingerprint);
        }
        Ok(all)
    }
}

/// The pins of `store`, reloaded in the background (see [`follow`]).
pub fn pins(store: Arc<dyn McpPinStore>, directory: Option<&Directory>) -> Arc<Pins> {
    let pins = Arc::new(Pins::new(Arc::new(StoreLedger(store))));
    follow(Arc::downgrade(&pins), directory.cloned());
    pins
}

/// Reloads `pins` from the database now and then every identity poll interval, for as long as
/// they exist. A failed reload keeps the pins in memory.
pub fn follow(pins: Weak<Pins>, directory: Option<Directory>) {
    tokio::spawn(async move {
        loop {
            let Some(current) = pins.upgrade() else {
                return;
            };
            if let Err(e) = current.refresh().await {
                tracing::warn!("MCP tool pins not reloaded: {e}");
            }
            drop(current);
            let interval = directory
                .as_ref()
                .map_or(DEFAULT_INTERVAL, Directory::poll_interval);
            tokio::time::sleep(interval).await;
        }
    });
}
