//! The application's executor runs the connections' driver tasks once given to `set_spawner`
//! (its own test binary: the spawner is set once per process).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tidings_smol::{Message, SpawnerSet};

#[test]
fn driver_tasks_run_on_the_executor_given_to_set_spawner() {
    let executor: Arc<smol::Executor<'static>> = Arc::new(smol::Executor::new());
    let spawned = Arc::new(AtomicUsize::new(0));
    let (ex, count) = (executor.clone(), spawned.clone());
    tidings_smol::set_spawner(move |task| {
        count.fetch_add(1, Ordering::SeqCst);
        ex.spawn(task).detach();
    })
    .unwrap();
    assert!(
        matches!(tidings_smol::set_spawner(|_| {}), Err(SpawnerSet { .. })),
        "the first one stays"
    );

    // Everything runs on `executor`, driven by this thread alone.
    smol::block_on(executor.run(async {
        let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let server = executor.spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tidings_smol::accept(stream).await.unwrap();
            while let Some(Ok(message)) = ws.recv().await {
                ws.send(message).await.unwrap();
            }
        });
        let mut client = tidings_smol::connect(&url).await.unwrap();
        client.send(Message::text("hello")).await.unwrap();
        let echo = client.recv().await.unwrap().unwrap();
        assert_eq!(echo.as_text(), Some("hello"));
        assert_eq!(
            spawned.load(Ordering::SeqCst),
            2,
            "one driver task per connection, both through the spawner"
        );
        client
            .close(tidings_smol::CloseCode::NORMAL, "")
            .await
            .unwrap();
        server.await;
    }));
}
