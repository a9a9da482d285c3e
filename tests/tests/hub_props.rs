//! Property test of the hub over real loopback sockets, on both runtimes: a random sequence of
//! joins, leaves, room deletions, broadcasts (to all, to all but one, to a room with or without
//! an excepted member, to a set of rooms) and reconnects, over a few live clients, delivers to
//! exactly the clients a simple model (room → set of clients) says, in the order sent, and the
//! hub's room tables agree with the model after every step.
//!
//! Nothing sleeps: joins, leaves and broadcasts are made server-side (deterministic); a
//! disconnect is awaited through the backend's `Presence::Disconnected` (reported once the
//! client has left its rooms and the hub); what a client received is read up to a marker sent
//! after everything it was due.

tidings_tests::runtime_shims!();

#[path = "common/removals.rs"]
mod removals;

macro_rules! hub_property {
    () => {
        use std::collections::{BTreeMap, BTreeSet};
        use std::time::Duration;

        use proptest::prelude::*;
        use smol::channel::{Receiver, unbounded};

        use rt::ws::hub::{Admission, Client, ClientId, Hub, HubError, Message, handler_fn};
        use rt::ws::server::Server;
        use rt::ws::{CloseCode, UpgradeRequest, WebSocket};

        const GUARD: Duration = Duration::from_secs(20);
        /// Live clients at any time.
        const SLOTS: usize = 4;
        const ROOMS: [&str; 3] = ["a", "b", "c"];
        /// What each client reads last: everything it was due comes before.
        const MARKER: &str = "marker";

        #[derive(Debug, Clone)]
        enum Op {
            Join(usize, usize),
            Leave(usize, usize),
            DeleteRoom(usize),
            ToAll,
            ToAllExcept(usize),
            ToRoom(usize, Option<usize>),
            ToRooms(Vec<usize>),
            /// The slot's client disconnects (cleanly or by dropping its WebSocket) and a new
            /// client takes its place.
            Reconnect(usize, bool),
        }

        fn op() -> impl Strategy<Value = Op> {
            let slot = 0..SLOTS;
            let room = 0..ROOMS.len();
            prop_oneof![
                4 => (slot.clone(), room.clone()).prop_map(|(s, r)| Op::Join(s, r)),
                2 => (slot.clone(), room.clone()).prop_map(|(s, r)| Op::Leave(s, r)),
                1 => room.clone().prop_map(Op::DeleteRoom),
                2 => Just(Op::ToAll),
                2 => slot.clone().prop_map(Op::ToAllExcept),
                3 => (room.clone(), proptest::option::of(slot.clone()))
                    .prop_map(|(r, s)| Op::ToRoom(r, s)),
                3 => proptest::collection::vec(room, 0..4).prop_map(Op::ToRooms),
                1 => (slot, any::<bool>()).prop_map(|(s, clean)| Op::Reconnect(s, clean)),
            ]
        }

        use crate::removals::Removals;

        /// One live client: its ID, its socket, and the broadcasts it is due (in order) since
        /// it was last checked.
        struct Slot {
            id: String,
            ws: WebSocket,
            due: Vec<u32>,
        }

        /// Everything the model says the hub is.
        #[derive(Default)]
        struct Model {
            /// Non-empty rooms and their members, by slot.
            rooms: BTreeMap<&'static str, BTreeSet<usize>>,
        }

        impl Model {
            fn rooms_of(&self, slot: usize) -> Vec<String> {
                let rooms = self.rooms.iter().filter(|(_, members)| members.contains(&slot));
                rooms.map(|(name, _)| (*name).to_owned()).collect()
            }
        }

        struct Harness {
            hub: Hub,
            url: String,
            connected: Receiver<Client>,
            removed: Receiver<ClientId>,
            slots: Vec<Slot>,
            model: Model,
            next_id: usize,
            seq: u32,
        }

        impl Harness {
            async fn connect(&mut self) -> Slot {
                let id = format!("c{}", self.next_id);
                self.next_id += 1;
                let ws = rt::ws::connect(&format!("{}?id={id}", self.url))
                    .await
                    .expect("connect");
                let client = self.connected.recv().await.expect("on_connect");
                assert_eq!(client.id(), id.as_str());
                Slot {
                    id,
                    ws,
                    due: Vec::new(),
                }
            }

            fn client(&self, slot: usize) -> Client {
                self.hub.client(&self.slots[slot].id).expect("a live client")
            }

            /// Broadcasts the next number through `send` to the slots in `to`; checks the count.
            fn broadcast(
                &mut self,
                to: BTreeSet<usize>,
                send: impl FnOnce(&Hub, String) -> Result<usize, HubError>,
            ) {
                let seq = self.seq;
                self.seq += 1;
                let delivered = send(&self.hub, seq.to_string()).expect("broadcast");
                assert_eq!(delivered, to.len(), "broadcast {seq} to {to:?}");
                for slot in to {
                    self.slots[slot].due.push(seq);
                }
            }

            fn members(&self, rooms: &[usize]) -> BTreeSet<usize> {
                rooms
                    .iter()
                    .filter_map(|&r| self.model.rooms.get(ROOMS[r]))
                    .flatten()
                    .copied()
                    .collect()
            }

            async fn apply(&mut self, op: &Op) {
                match *op {
                    Op::Join(slot, room) => {
                        let joined = self.client(slot).join(ROOMS[room]).expect("join");
                        let new = self.model.rooms.entry(ROOMS[room]).or_default().insert(slot);
                        assert_eq!(joined, new, "{op:?}");
                    }
                    Op::Leave(slot, room) => {
                        let left = self.client(slot).leave(ROOMS[room]).expect("leave");
                        let was = self
                            .model
                            .rooms
                            .get_mut(ROOMS[room])
                            .is_some_and(|members| members.remove(&slot));
                        assert_eq!(left, was, "{op:?}");
                    }
                    Op::DeleteRoom(room) => {
                        let deleted = self.hub.delete_room(ROOMS[room]);
                        match self.model.rooms.remove(ROOMS[room]) {
                            Some(members) => assert_eq!(deleted.expect("delete"), members.len()),
                            None => assert!(
                                matches!(deleted, Err(HubError::RoomNotFound(_))),
                                "{op:?}: {deleted:?}"
                            ),
                        }
                    }
                    Op::ToAll => {
                        let to = (0..SLOTS).collect();
                        self.broadcast(to, |hub, text| hub.to_all().text(text));
                    }
                    Op::ToAllExcept(except) => {
                        let to = (0..SLOTS).filter(|&s| s != except).collect();
                        let id = self.client(except).id().clone();
                        self.broadcast(to, |hub, text| hub.to_all().except(&id).text(text));
                    }
                    Op::ToRoom(room, except) => {
                        let mut to = self.members(&[room]);
                        let except = except.map(|slot| {
                            to.remove(&slot);
                            self.client(slot).id().clone()
                        });
                        self.broadcast(to, |hub, text| {
                            let broadcast = hub.to_room(ROOMS[room]);
                            match &except {
                                Some(id) => broadcast.except(id).text(text),
                                None => broadcast.text(text),
                            }
                        });
                    }
                    Op::ToRooms(ref rooms) => {
                        let to = self.members(rooms);
                        let names: Vec<&str> = rooms.iter().map(|&r| ROOMS[r]).collect();
                        self.broadcast(to, |hub, text| hub.to_rooms(names).text(text));
                    }
                    Op::Reconnect(slot, clean) => {
                        // What it was due so far arrives before a marker sent to it alone.
                        self.client(slot).send_text(MARKER).expect("marker");
                        check_received(&mut self.slots[slot]).await;
                        let new = self.connect().await;
                        let old = std::mem::replace(&mut self.slots[slot], new);
                        let Slot { id, mut ws, .. } = old;
                        if clean {
                            ws.close(CloseCode::NORMAL, "").await.expect("close");
                        } else {
                            drop(ws);
                        }
                        while self.removed.recv().await.expect("removal") != id.as_str() {}
                        assert!(self.hub.client(&id).is_none());
                        // The model: the old client left its rooms; the slot's new client is in
                        // none.
                        for members in self.model.rooms.values_mut() {
                            members.remove(&slot);
                        }
                    }
                }
                self.model.rooms.retain(|_, members| !members.is_empty());
                self.check_tables();
            }

            /// The hub's rooms, their members and each client's rooms agree with the model.
            fn check_tables(&self) {
                let rooms: Vec<String> = self.model.rooms.keys().map(|r| (*r).to_owned()).collect();
                assert_eq!(self.hub.rooms(), rooms);
                for (name, members) in &self.model.rooms {
                    let room = self.hub.get_room(name).expect("a room of the model");
                    let mut ids: Vec<String> =
                        room.clients().iter().map(|c| c.id().to_string()).collect();
                    ids.sort();
                    let mut expected: Vec<String> =
                        members.iter().map(|&s| self.slots[s].id.clone()).collect();
                    expected.sort();
                    assert_eq!(ids, expected, "members of {name}");
                }
                for slot in 0..SLOTS {
                    assert_eq!(self.client(slot).rooms(), self.model.rooms_of(slot));
                }
                assert_eq!(self.hub.client_count(), SLOTS);
            }
        }

        /// Reads the slot's messages up to the marker: exactly what it was due, in order.
        async fn check_received(slot: &mut Slot) {
            let mut got = Vec::new();
            loop {
                match slot.ws.recv().await {
                    Some(Ok(Message::Text(text))) if text.as_str() == MARKER => break,
                    Some(Ok(Message::Text(text))) => {
                        got.push(text.parse::<u32>().expect("a number"));
                    }
                    other => panic!("{}: unexpected {other:?}", slot.id),
                }
            }
            assert_eq!(got, std::mem::take(&mut slot.due), "what {} received", slot.id);
        }

        async fn run_case(ops: Vec<Op>) {
            let (connected_tx, connected) = unbounded();
            let (removed_tx, removed) = unbounded();
            let hub = Hub::builder()
                .backend(Removals(removed_tx))
                .on_connect(move |client| {
                    let _ = connected_tx.try_send(client.clone());
                })
                .build();
            let route = hub.route(|req: &UpgradeRequest<'_>| {
                let id = req.query().and_then(|q| q.strip_prefix("id=")).expect("an id");
                let quiet = handler_fn(|_client: Client, _message: Message| async { Ok(()) });
                Ok(Admission::new(quiet).id(id))
            });
            let listening = Server::new()
                .route("/ws", route)
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("ws://{}/ws", listening.local_addr());
            let handle = listening.handle();
            let serving = rt::spawn(listening.serve());
            let mut h = Harness {
                hub: hub.clone(),
                url,
                connected,
                removed,
                slots: Vec::new(),
                model: Model::default(),
                next_id: 0,
                seq: 0,
            };
            for _ in 0..SLOTS {
                let slot = h.connect().await;
                h.slots.push(slot);
            }
            for op in &ops {
                h.apply(op).await;
            }
            assert_eq!(hub.to_all().text(MARKER).expect("marker"), SLOTS);
            for slot in &mut h.slots {
                check_received(slot).await;
            }
            for slot in h.slots.drain(..) {
                let mut ws = slot.ws;
                ws.close(CloseCode::NORMAL, "").await.expect("close");
            }
            hub.idle().await;
            assert!(hub.rooms().is_empty());
            handle.shutdown();
            serving.await;
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 24,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn broadcasts_reach_exactly_the_clients_the_room_model_says(
                ops in proptest::collection::vec(op(), 1..48)
            ) {
                rt::run(GUARD, run_case(ops));
            }
        }
    };
}

mod tokio_suite {
    use super::tokio_rt as rt;
    hub_property!();
}

mod smol_suite {
    use super::smol_rt as rt;
    hub_property!();
}
