//! `compio_echo_server [ADDR]`: the echo server of this package's library on a compio runtime
//! (io_uring). The listen address is the first argument (default `127.0.0.1:9001`).

use compio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    tidings_compio_example::runtime()?.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!(
            "compio_echo_server listening on ws://{}",
            listener.local_addr()?
        );
        tidings_compio_example::run(listener).await
    })
}
