//! The chat behind a login, over HTTPS and `wss://` (tidings-tokio + the hub + rustls): the page
//! at `/` asks for a user name and password, `POST /login` answers a one-time ticket, and the
//! WebSocket at `/ws?otp=TICKET` runs the `chat` example's rooms for the user who logged in.
//! The routes, JSON, statuses and limits are documented in `tidings_examples::secure_chat`
//! (`examples/src/secure_chat.rs`); the chat's wire protocol in `tidings_examples::chat`.
//!
//! ```sh
//! cargo run --release --example secure_chat -- 127.0.0.1:8443
//! # open https://127.0.0.1:8443/ (accept the development certificate), log in as alice / wonderland
//! curl -sk -X POST -d '{"username":"alice","password":"wonderland"}' https://127.0.0.1:8443/login
//! # {"otp":"…"}: good for one WebSocket upgrade at wss://127.0.0.1:8443/ws?otp=… within 5 s
//! cargo run --release --example secure_chat -- 0.0.0.0:443 --cert fullchain.pem --key privkey.pem \
//!     --user alice --password 'correct horse' --user bob --password 'battery staple'
//! ```
//!
//! Usage: `secure_chat [ADDR] [--cert FILE --key FILE] [--user NAME --password SECRET]...`.
//!
//! * `ADDR` defaults to `127.0.0.1:8443`. The server speaks TLS only (HTTPS and `wss://`).
//! * Without `--cert`/`--key` it makes a self-signed development certificate at start (rcgen)
//!   for `localhost`, `127.0.0.1` and the address it binds (when that is a specific one), and
//!   says so: browsers warn about it (accept it once), and `curl` needs `-k` (or `--cacert`
//!   with the PEM it can print with `--print-cert`). With them it loads the certificate chain
//!   and the private key (PKCS#8, RSA or SEC1) from PEM files.
//! * Without `--user`/`--password` the one user is `alice` with the password `wonderland`, and
//!   it says so. Each `--user NAME` takes the `--password SECRET` given with it (the n-th
//!   `--user` the n-th `--password`); repeat the pair for several users. A password on the
//!   command line is visible to other local users (`ps`): this is a development setup.
//!
//! Exit status `2` for a bad command line or certificate files that cannot be used (with a
//! message saying what is wrong), `1` when the address cannot be bound.
//!
//! Ctrl-C shuts it down gracefully: the hub closes every client with 1001 (going away), and the
//! server waits up to 5 s for the connections to end.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tidings_examples::secure_chat::{self, App, Credentials};
use tidings_tokio::server::Server;
use tidings_tokio::tls::rustls;

const DEFAULT_ADDR: &str = "127.0.0.1:8443";

const USAGE: &str = "\
usage: secure_chat [ADDR] [--cert FILE --key FILE] [--user NAME --password SECRET]...

  ADDR                 address to listen on (default 127.0.0.1:8443); HTTPS and wss:// only
  --cert FILE          PEM certificate chain (the server's certificate first)
  --key FILE           PEM private key of that certificate (PKCS#8, RSA or SEC1)
                       (without --cert/--key: a self-signed development certificate)
  --user NAME          a user who may log in (repeatable, each with its --password)
  --password SECRET    that user's password
                       (without --user/--password: alice / wonderland)
  --print-cert         with the development certificate: print it (PEM) at start
  -h, --help           print this and exit
";

/// The command line.
struct Args {
    addr: String,
    cert: Option<(PathBuf, PathBuf)>,
    users: Option<Credentials>,
    print_cert: bool,
}

/// Parses the arguments after the program name; `Err(code)` after printing usage.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, ExitCode> {
    let bad = |why: String| {
        eprint!("secure_chat: {why}\n{USAGE}");
        ExitCode::from(2)
    };
    let mut addr = None;
    let mut cert = None;
    let mut key = None;
    let mut names = Vec::new();
    let mut passwords = Vec::new();
    let mut print_cert = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--flag=value` and `--flag value` alike.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| match inline.map(str::to_owned).or_else(|| args.next()) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(bad(format!("{flag} needs {what}"))),
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Err(ExitCode::SUCCESS);
            }
            "--cert" => cert = Some(PathBuf::from(value("a FILE")?)),
            "--key" => key = Some(PathBuf::from(value("a FILE")?)),
            "--user" => names.push(value("a NAME")?),
            "--password" => passwords.push(value("a SECRET")?),
            "--print-cert" if inline.is_none() => print_cert = true,
            _ if arg.starts_with('-') => return Err(bad(format!("unknown option {arg}"))),
            _ if addr.is_none() => addr = Some(arg),
            _ => return Err(bad(format!("unexpected argument {arg}"))),
        }
    }
    let cert = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err(bad("--cert needs --key".to_owned())),
        (None, Some(_)) => return Err(bad("--key needs --cert".to_owned())),
    };
    if print_cert && cert.is_some() {
        return Err(bad(
            "--print-cert is for the development certificate (no --cert/--key)".to_owned(),
        ));
    }
    if names.len() != passwords.len() {
        return Err(bad(format!(
            "{} --user but {} --password: give one password per user",
            names.len(),
            passwords.len()
        )));
    }
    let users = if names.is_empty() {
        None
    } else {
        let mut users = Credentials::new();
        for (name, password) in names.into_iter().zip(passwords) {
            users.add(name, password).map_err(bad)?;
        }
        Some(users)
    };
    Ok(Args {
        addr: addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
        cert,
        users,
        print_cert,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let tls = match tls_config(&args) {
        Ok(tls) => tls,
        Err(why) => {
            eprintln!("secure_chat: {why}");
            return ExitCode::from(2);
        }
    };
    match run(args, tls).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secure_chat: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The TLS config of the command line, announcing a development certificate.
fn tls_config(args: &Args) -> Result<Arc<rustls::ServerConfig>, String> {
    if let Some((cert, key)) = &args.cert {
        let config = secure_chat::pem_tls_config(cert, key).map_err(|e| e.to_string())?;
        println!("certificate: {} (key {})", cert.display(), key.display());
        return Ok(config);
    }
    // The bound address too, when it is a specific one (not 0.0.0.0 or ::).
    let ips: Vec<IpAddr> = args
        .addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", args.addr))?
        .map(|addr| addr.ip())
        .collect();
    let dev = secure_chat::self_signed_tls_config(&ips).map_err(|e| e.to_string())?;
    println!(
        "development certificate: self-signed for {} — your browser will warn",
        dev.names.join(", ")
    );
    if args.print_cert {
        print!("{}", dev.certificate_pem);
    }
    Ok(dev.config)
}

async fn run(args: Args, tls: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    let users = match args.users {
        Some(users) => users,
        None => {
            println!(
                "development credentials: {} / {} (--user/--password for your own)",
                secure_chat::DEV_USER,
                secure_chat::DEV_PASSWORD
            );
            Credentials::development()
        }
    };
    let app = App::new(users);
    let server = Server::new().tls(tls).routes(secure_chat::routes(&app));
    let listening = server.bind(&args.addr).await?;
    let local = listening.local_addr();
    println!("secure_chat listening on https://{local}/ — open it in a browser");
    let report = listening
        .serve_with_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            let closed = app.hub.close();
            println!("shutting down: {closed} client(s) sent close 1001");
        })
        .await;
    println!("stopped ({} connection(s) still open)", report.still_open);
    Ok(())
}
