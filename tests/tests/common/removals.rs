//! A hub backend for tests: in-process delivery, and every client's removal reported on a
//! channel (`Disconnected` is reported once the client has left its rooms and the hub's table),
//! so that a test waits on the event instead of sleeping. Included by `hub.rs` and
//! `hub_props.rs`.

use smol::channel::Sender;
use tidings_hub::{Backend, Broadcast, ClientId, HubError, Node, Presence};

/// The in-process backend, reporting each client's removal.
pub struct Removals(pub Sender<ClientId>);

impl Backend for Removals {
    fn publish(&self, broadcast: Broadcast, local: &Node) -> Result<usize, HubError> {
        Ok(local.deliver(&broadcast))
    }

    fn presence(&self, change: Presence) {
        if let Presence::Disconnected(id) = change {
            let _ = self.0.try_send(id);
        }
    }
}
