//! The engine's own tests, on the deterministic runtime of `testing`: wakeups, the ordering
//! rules, backpressure, cancellation and timers, with no socket, no thread and no sleep.

#![allow(clippy::unwrap_used)]

use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tidings_core::{CloseCode, ConnectionError, Event, Message};

use super::testing::{Peer, WakeCount, connect, poll_once};
use crate::runtime::Runtime;
use crate::{Config, Error, OutboxLimits, WebSocket};

/// Receives the next message, which must be ready now.
fn recv_now(ws: &mut WebSocket) -> Option<Result<Message, Error>> {
    let (_, waker) = WakeCount::new();
    match poll_once(pin!(ws.recv()), &waker) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("recv is waiting"),
    }
}

/// Sends `message`, which must be accepted now.
fn send_now(ws: &mut WebSocket, message: &str) {
    let (_, waker) = WakeCount::new();
    match poll_once(pin!(ws.send(Message::text(message.to_owned()))), &waker) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("send is waiting"),
    }
}

fn text(event: &Event) -> Option<&str> {
    match event {
        Event::Message(m) => m.as_text(),
        _ => None,
    }
}

fn close_code(event: &Event) -> Option<u16> {
    match event {
        Event::CloseReceived(Some(frame)) => Some(frame.code.as_u16()),
        _ => None,
    }
}

/// The client sends `first` (text) and then whatever `then` queues, in one write.
fn message_then(peer: &mut Peer, first: &str, then: impl FnOnce(&mut Peer)) {
    peer.client.send_text(first).unwrap();
    then(peer);
    peer.flush();
}

#[test]
fn an_answer_leaves_before_the_close_reply_to_a_close_that_followed_its_message() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    message_then(&mut peer, "a", |p| {
        let now = p.rt.now();
        p.client.close(now, CloseCode::NORMAL, "bye").unwrap();
    });
    assert_eq!(recv_now(&mut ws).unwrap().unwrap().as_text(), Some("a"));
    // The driver runs while the application handles "a": it must not answer the close.
    peer.rt.run();
    assert_eq!(
        peer.unread(),
        0,
        "nothing written while the message is held"
    );
    assert!(!ws.is_closed());
    send_now(&mut ws, "a");
    assert!(recv_now(&mut ws).is_none(), "a clean close");
    let events = peer.events();
    assert_eq!(text(&events[0]), Some("a"), "{events:?}");
    assert_eq!(close_code(&events[1]), Some(1000), "{events:?}");
}

#[test]
fn a_close_behind_a_message_the_application_never_answers_is_answered_after_the_grace() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    message_then(&mut peer, "a", |p| {
        let now = p.rt.now();
        p.client
            .close(now, CloseCode::GOING_AWAY, "shutdown")
            .unwrap();
    });
    assert_eq!(recv_now(&mut ws).unwrap().unwrap().as_text(), Some("a"));
    // The application holds "a" and goes elsewhere for good.
    peer.rt.run();
    peer.rt
        .advance(super::inbound::HOLD_GRACE - Duration::from_millis(1));
    peer.rt.run();
    assert_eq!(
        peer.unread(),
        0,
        "still the application's, within the grace"
    );
    peer.rt.advance(Duration::from_millis(1));
    peer.rt.run();
    let events = peer.events();
    assert_eq!(
        close_code(&events[0]),
        Some(1001),
        "answered for it: {events:?}"
    );
    assert!(
        peer.is_shut_down(),
        "the server closes the transport (RFC 6455 §7.1.1)"
    );
}

#[test]
fn an_answer_leaves_before_the_failure_of_a_malformed_frame_that_followed_its_message() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    peer.client.send_text("a").unwrap();
    peer.flush();
    // FIN + RSV2 + text, masked with a zero key: RSV2 means nothing here (RFC 6455 §5.2).
    peer.send_raw(&[0xA1, 0x81, 0, 0, 0, 0, b'x']);
    assert_eq!(recv_now(&mut ws).unwrap().unwrap().as_text(), Some("a"));
    peer.rt.run();
    assert_eq!(peer.unread(), 0);
    send_now(&mut ws, "a");
    let err = recv_now(&mut ws).unwrap().unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR), "{err}");
    let events = peer.events();
    assert_eq!(text(&events[0]), Some("a"), "{events:?}");
    assert_eq!(close_code(&events[1]), Some(1002), "{events:?}");
}

#[test]
fn the_driver_answers_a_ping_behind_a_held_message_at_once() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    message_then(&mut peer, "a", |p| {
        let now = p.rt.now();
        p.client.send_ping(now, b"p").unwrap();
    });
    assert_eq!(recv_now(&mut ws).unwrap().unwrap().as_text(), Some("a"));
    peer.rt.run();
    let events = peer.events();
    assert!(
        matches!(&events[..], [Event::Pong(p)] if &p[..] == b"p"),
        "the pong, without the application: {events:?}"
    );
    // The ping is still reported to the application, in order.
    let (_, waker) = WakeCount::new();
    let event = poll_once(pin!(ws.recv_event()), &waker);
    assert!(
        matches!(event, Poll::Ready(Some(Event::Ping(_)))),
        "{event:?}"
    );
}

#[test]
fn a_ping_behind_a_second_message_waits_for_the_application() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    message_then(&mut peer, "a", |p| {
        p.client.send_text("b").unwrap();
        let now = p.rt.now();
        p.client.send_ping(now, b"p").unwrap();
    });
    assert_eq!(recv_now(&mut ws).unwrap().unwrap().as_text(), Some("a"));
    peer.rt.run();
    assert_eq!(
        peer.unread(),
        0,
        "\"b\" is next: the driver leaves it, and the ping behind it"
    );
    assert_eq!(recv_now(&mut ws).unwrap().unwrap().as_text(), Some("b"));
    peer.rt.run();
    let events = peer.events();
    assert!(matches!(&events[..], [Event::Pong(_)]), "{events:?}");
}

#[test]
fn readiness_goes_to_the_waiting_reader_and_never_wakes_the_driver() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    let wakes_before = peer.rt.task_wakes();
    let (reader, waker) = WakeCount::new();
    for round in 0..10 {
        {
            let mut recv = pin!(ws.recv());
            assert!(poll_once(recv.as_mut(), &waker).is_pending());
            peer.client.send_text(&format!("m{round}")).unwrap();
            peer.flush();
            assert_eq!(reader.get(), round + 1, "the reader is woken");
            let got = poll_once(recv.as_mut(), &waker);
            assert!(
                matches!(&got, Poll::Ready(Some(Ok(m))) if m.len() == 2),
                "{got:?}"
            );
        }
        send_now(&mut ws, "r");
    }
    assert_eq!(
        peer.rt.task_wakes(),
        wakes_before,
        "request/response with the application in recv: the driver is never woken"
    );
    assert_eq!(peer.events().len(), 10);
}

#[test]
fn a_recv_dropped_while_waiting_hands_readiness_to_the_driver() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    let (_, waker) = WakeCount::new();
    {
        let recv = pin!(ws.recv());
        assert!(poll_once(recv, &waker).is_pending());
    }
    let now = peer.rt.now();
    peer.client.send_ping(now, b"q").unwrap();
    peer.flush();
    assert!(peer.rt.task_wakes() > 0, "the driver hears of the input");
    peer.rt.run();
    let events = peer.events();
    assert!(
        matches!(&events[..], [Event::Pong(p)] if &p[..] == b"q"),
        "{events:?}"
    );
}

#[test]
fn the_answers_to_a_batch_of_requests_leave_in_one_write() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    for i in 0..5 {
        peer.client.send_text(&format!("{i}")).unwrap();
    }
    peer.flush();
    for i in 0..5 {
        let m = recv_now(&mut ws).unwrap().unwrap();
        assert_eq!(m.as_text(), Some(&*format!("{i}")));
        send_now(&mut ws, m.as_text().unwrap());
    }
    // The first four answers were deferred while more requests waited; the fifth, answering
    // the last buffered request, wrote them all.
    assert_eq!(peer.writes(), 1, "one write for the batch");
    let (_, waker) = WakeCount::new();
    assert!(poll_once(pin!(ws.recv()), &waker).is_pending());
    assert_eq!(peer.writes(), 1);
    let got: Vec<_> = peer
        .events()
        .iter()
        .filter_map(|e| text(e).map(str::to_owned))
        .collect();
    assert_eq!(got, ["0", "1", "2", "3", "4"]);
}

#[test]
fn a_large_answer_leaves_before_the_engine_reads_the_next_large_message() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    let sizes = [65_536, 65_537, 70_000, 65_536];
    for (i, &size) in sizes.iter().enumerate() {
        peer.client.send_binary(&vec![i as u8; size]).unwrap();
    }
    peer.flush();
    let (_, waker) = WakeCount::new();
    for (i, &size) in sizes.iter().enumerate() {
        let m = recv_now(&mut ws).unwrap().unwrap();
        assert_eq!(m.as_bytes().len(), size, "message {i}");
        if i == 0 {
            // Once a message's worth is buffered the engine stops reading: the rest waits in
            // the transport instead of in the engine's buffer.
            assert!(
                peer.unread_input() > 2 * 65_536,
                "{} unread",
                peer.unread_input()
            );
        }
        // Every earlier answer left before this message was read in full: a peer waiting for
        // it works on it meanwhile.
        assert_eq!(peer.writes(), i, "writes before message {i} was returned");
        let send = poll_once(pin!(ws.send(m)), &waker);
        assert!(matches!(send, Poll::Ready(Ok(()))), "{send:?}");
    }
    assert!(poll_once(pin!(ws.recv()), &waker).is_pending());
    let echoes: Vec<usize> = peer
        .events()
        .iter()
        .map(|e| match e {
            Event::Message(Message::Binary(b)) => b.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(echoes, sizes);
}

#[test]
fn a_deferred_batch_is_written_by_the_driver_if_the_application_does_not_come_back() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    peer.client.send_text("a").unwrap();
    peer.client.send_text("b").unwrap();
    peer.flush();
    let m = recv_now(&mut ws).unwrap().unwrap();
    send_now(&mut ws, m.as_text().unwrap());
    assert_eq!(peer.writes(), 0);
    // The application goes elsewhere; its task yields, the driver runs.
    peer.rt.run();
    let events = peer.events();
    assert_eq!(events.len(), 1);
    assert_eq!(text(&events[0]), Some("a"));
}

#[test]
fn send_waits_above_the_write_high_water_mark_until_the_peer_reads() {
    let config = Config::default().write_high_water(1024);
    let (mut ws, mut peer) = connect(&config, 0);
    let big = "x".repeat(2000);
    send_now(&mut ws, &big);
    assert!(ws.queued_bytes() > 1024);
    let (writer, waker) = WakeCount::new();
    let mut send = pin!(ws.send(Message::text("after")));
    assert!(poll_once(send.as_mut(), &waker).is_pending());
    peer.allow(usize::MAX);
    assert_eq!(
        writer.get(),
        1,
        "the waiting writer is woken, not the driver"
    );
    assert!(matches!(
        poll_once(send.as_mut(), &waker),
        Poll::Ready(Ok(()))
    ));
    let got: Vec<_> = peer
        .events()
        .iter()
        .filter_map(|e| text(e).map(str::len))
        .collect();
    assert_eq!(got, [2000, 5]);
}

#[test]
fn a_send_cancelled_while_waiting_for_room_sends_nothing() {
    let config = Config::default().write_high_water(16);
    let (mut ws, mut peer) = connect(&config, 0);
    send_now(&mut ws, "first message, over the mark");
    let (_, waker) = WakeCount::new();
    {
        let send = pin!(ws.send(Message::text("cancelled")));
        assert!(poll_once(send, &waker).is_pending());
    }
    peer.allow(usize::MAX);
    peer.rt.run();
    let got: Vec<_> = peer
        .events()
        .iter()
        .filter_map(|e| text(e).map(str::to_owned))
        .collect();
    assert_eq!(got, ["first message, over the mark"]);
}

#[test]
fn keepalive_pings_and_the_pong_timeout_follow_the_clock() {
    let config = Config::default()
        .ping_interval(Some(Duration::from_secs(10)))
        .pong_timeout(Some(Duration::from_secs(5)));
    let (mut ws, mut peer) = connect(&config, usize::MAX);
    peer.rt.advance(Duration::from_secs(9));
    peer.rt.run();
    assert_eq!(peer.unread(), 0, "no ping before the interval");
    peer.rt.advance(Duration::from_secs(1));
    peer.rt.run();
    let events = peer.events();
    assert!(matches!(&events[..], [Event::Ping(_)]), "{events:?}");
    // No pong: the connection fails when the pong timeout ends.
    peer.rt.advance(Duration::from_secs(5));
    peer.rt.run();
    match recv_now(&mut ws) {
        Some(Err(Error::Connection(ConnectionError::PongTimeout))) => {}
        other => panic!("expected the pong timeout, got {other:?}"),
    }
}

#[test]
fn a_write_stalled_past_the_write_timeout_fails_the_connection() {
    let config = Config::default().write_timeout(Some(Duration::from_secs(2)));
    let (mut ws, peer) = connect(&config, 0);
    send_now(&mut ws, "stuck");
    peer.rt.advance(Duration::from_secs(1));
    peer.rt.run();
    assert!(!ws.is_closed());
    peer.rt.advance(Duration::from_secs(1));
    peer.rt.run();
    assert!(ws.is_closed());
    match recv_now(&mut ws) {
        Some(Err(Error::Io(e))) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut),
        other => panic!("expected the write timeout, got {other:?}"),
    }
}

#[test]
fn dropping_every_handle_flushes_what_is_queued_then_closes_with_1001() {
    let (mut ws, mut peer) = connect(&Config::default(), 0);
    send_now(&mut ws, "last words");
    drop(ws);
    peer.rt.run();
    peer.allow(usize::MAX);
    peer.rt.run();
    let events = peer.events();
    assert_eq!(text(&events[0]), Some("last words"), "{events:?}");
    assert_eq!(close_code(&events[1]), Some(1001), "{events:?}");
    // The client answers; the engine shuts the transport down and the driver ends.
    peer.flush();
    peer.rt.run();
    assert!(peer.is_shut_down());
    assert_eq!(peer.rt.live_tasks(), 0, "the driver ended");
}

#[test]
fn outbox_messages_queued_before_the_driver_runs_leave_in_one_write_with_one_wake() {
    let (ws, mut peer) = connect(&Config::default(), usize::MAX);
    let outbox = ws.outbox(OutboxLimits::default());
    let wakes = peer.rt.task_wakes();
    for i in 0..3 {
        outbox.try_send(Message::text(format!("b{i}"))).unwrap();
    }
    assert_eq!(peer.rt.task_wakes(), wakes + 1, "one wake for the batch");
    assert_eq!(outbox.queued_messages(), 3);
    peer.rt.run();
    assert_eq!(peer.writes(), 1);
    assert_eq!(outbox.queued_messages(), 0);
    let got: Vec<_> = peer
        .events()
        .iter()
        .filter_map(|e| text(e).map(str::to_owned))
        .collect();
    assert_eq!(got, ["b0", "b1", "b2"]);
}

#[test]
fn a_full_outbox_refuses_and_a_closing_one_says_closed() {
    let (ws, mut peer) = connect(&Config::default(), 0);
    let outbox = ws.outbox(OutboxLimits::default().messages(2));
    outbox.try_send(Message::text("1")).unwrap();
    outbox.try_send(Message::text("2")).unwrap();
    let err = outbox.try_send(Message::text("3")).unwrap_err();
    assert!(err.is_full(), "{err}");
    assert!(outbox.close(CloseCode::GOING_AWAY, "bye").unwrap());
    assert!(
        !outbox.close(CloseCode::GOING_AWAY, "again").unwrap(),
        "already closing"
    );
    assert!(matches!(
        outbox.try_send(Message::text("4")),
        Err(crate::OutboxError::Closed)
    ));
    peer.allow(usize::MAX);
    peer.rt.run();
    let events = peer.events();
    assert_eq!(text(&events[0]), Some("1"), "{events:?}");
    assert_eq!(text(&events[1]), Some("2"), "{events:?}");
    assert_eq!(close_code(&events[2]), Some(1001), "{events:?}");
}

#[test]
fn close_waits_for_the_peer_and_reports_the_outcome() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    let (closer, waker) = WakeCount::new();
    let mut close = pin!(ws.close(CloseCode::NORMAL, "done"));
    assert!(poll_once(close.as_mut(), &waker).is_pending());
    let events = peer.events();
    assert_eq!(close_code(&events[0]), Some(1000));
    peer.flush(); // the client's reply
    peer.rt.run();
    assert_eq!(closer.get(), 1);
    let Poll::Ready(Ok(outcome)) = poll_once(close.as_mut(), &waker) else {
        panic!("the close is done");
    };
    assert!(outcome.clean, "{outcome:?}");
    assert!(peer.is_shut_down());
}

#[test]
fn the_close_timeout_ends_a_close_the_peer_never_answers() {
    let config = Config::default().close_timeout(Some(Duration::from_secs(3)));
    let (mut ws, peer) = connect(&config, usize::MAX);
    let (_, waker) = WakeCount::new();
    let mut close = pin!(ws.close(CloseCode::NORMAL, ""));
    assert!(poll_once(close.as_mut(), &waker).is_pending());
    peer.rt.advance(Duration::from_secs(3));
    peer.rt.run();
    let Poll::Ready(Ok(outcome)) = poll_once(close.as_mut(), &waker) else {
        panic!("the close timeout ended it");
    };
    assert!(!outcome.clean);
    assert_eq!(outcome.error, Some(ConnectionError::CloseTimeout));
}

#[test]
fn ping_resolves_with_the_round_trip_on_the_simulated_clock() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    let (pinger, waker) = WakeCount::new();
    let mut ping = pin!(ws.ping());
    assert!(poll_once(ping.as_mut(), &waker).is_pending());
    let events = peer.events();
    assert!(matches!(&events[..], [Event::Ping(_)]), "{events:?}");
    peer.rt.advance(Duration::from_millis(40));
    // The client's automatic pong goes back; the driver reads it.
    peer.flush();
    peer.rt.run();
    assert_eq!(pinger.get(), 1);
    let got = poll_once(ping.as_mut(), &waker);
    assert!(
        matches!(got, Poll::Ready(Ok(rtt)) if rtt == Duration::from_millis(40)),
        "{got:?}"
    );
}

#[test]
fn end_of_stream_without_a_close_is_an_error_once() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    peer.send_eof();
    match recv_now(&mut ws) {
        Some(Err(Error::Connection(ConnectionError::UnexpectedEof))) => {}
        other => panic!("expected end of stream, got {other:?}"),
    }
    assert!(recv_now(&mut ws).is_none());
    assert_eq!(ws.close_outcome().map(|o| o.clean), Some(false));
}

#[test]
fn an_idle_connection_holds_no_buffer() {
    let (mut ws, mut peer) = connect(&Config::default(), usize::MAX);
    let capacity = |ws: &WebSocket| ws.engine().lock().conn.input_buffer().capacity();
    for round in 0..3 {
        peer.client
            .send_text(&"m".repeat(100 * (round + 1)))
            .unwrap();
        peer.flush();
        let m = recv_now(&mut ws).unwrap().unwrap();
        assert!(capacity(&ws) > 0, "reading allocated the input buffer");
        send_now(&mut ws, m.as_text().unwrap());
        let (_, waker) = WakeCount::new();
        assert!(poll_once(pin!(ws.recv()), &waker).is_pending());
        assert_eq!(capacity(&ws), 0, "released once the reader waits");
        assert_eq!(peer.events().len(), 1);
    }
    // The driver releases too, when it is the one that read.
    let now = peer.rt.now();
    peer.client.send_ping(now, b"z").unwrap();
    peer.flush();
    peer.rt.run();
    assert!(matches!(&peer.events()[..], [Event::Pong(_)]));
    assert_eq!(capacity(&ws), 0);
}
