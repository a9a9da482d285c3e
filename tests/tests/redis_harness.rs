//! A self-check of the private `redis-server` harness (`common/redis_server.rs`): commands and
//! replies, kill, and restart on the same port without persistence.
//!
//! Without `redis-server` the test prints that it is skipped and passes; with
//! `TIDINGS_REDIS_TESTS=require` it fails instead.

#[path = "common/redis_server.rs"]
mod redis_server;

use redis_server::Reply;

/// SET/GET round-trip, `kill` refuses connections, `restart` serves again on the same port and
/// starts empty.
#[test]
fn start_command_kill_restart() {
    let Some(mut server) = redis_server::start() else {
        return;
    };
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    assert!(server.is_running());

    assert_eq!(
        server.command(&[b"SET", b"k", b"v"]).expect("SET"),
        Reply::Simple("OK".to_owned())
    );
    assert_eq!(
        server.command(&[b"GET", b"k"]).expect("GET"),
        Reply::Bulk(Some(b"v".to_vec()))
    );
    // Nil bulk, integer, error and (nested) array replies parse too.
    assert_eq!(
        server.command(&[b"GET", b"missing"]).expect("GET missing"),
        Reply::Bulk(None)
    );
    assert_eq!(
        server
            .command(&[b"RPUSH", b"list", b"a", b"b"])
            .expect("RPUSH"),
        Reply::Integer(2)
    );
    assert_eq!(
        server
            .command(&[b"LRANGE", b"list", b"0", b"-1"])
            .expect("LRANGE"),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"a".to_vec())),
            Reply::Bulk(Some(b"b".to_vec())),
        ]))
    );
    assert_eq!(
        server
            .command(&[b"BLPOP", b"missing", b"0.01"])
            .expect("BLPOP"),
        Reply::Array(None),
        "a blocking pop that times out answers the nil array"
    );
    assert!(matches!(
        server.command(&[b"NO-SUCH-COMMAND"]).expect("an unknown command"),
        Reply::Error(e) if e.starts_with("ERR")
    ));
    assert!(matches!(
        server.command(&[b"COMMAND", b"INFO", b"get"]).expect("COMMAND INFO"),
        Reply::Array(Some(ref infos))
            if matches!(infos.first(), Some(Reply::Array(Some(info))) if info.len() > 1)
    ));

    server.kill();
    assert!(!server.is_running());
    assert!(
        server.command(&[b"PING"]).is_err(),
        "connections are refused after kill"
    );
    server.kill(); // idempotent

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(
        server.command(&[b"PING"]).expect("PING after restart"),
        Reply::Simple("PONG".to_owned())
    );
    assert_eq!(
        server.command(&[b"GET", b"k"]).expect("GET after restart"),
        Reply::Bulk(None),
        "nothing is persisted across a restart"
    );

    // A restart of a running server works as well.
    server.restart();
    assert_eq!(
        server
            .command(&[b"PING"])
            .expect("PING after a second restart"),
        Reply::Simple("PONG".to_owned())
    );
}
