//! A real browser for the tests, driven over WebDriver (used by `tests/tests/browser.rs` only).
//!
//! [`run`] is the whole harness: it finds `chromedriver` and `chromium` ([`Tools::find`]; a
//! machine without them skips, or fails under `TIDINGS_BROWSER_TESTS=require`), starts a
//! chromedriver of its own on a free loopback port ([`ChromeDriver`], killed on drop), hands the
//! scenario a [`Browser`] to open sessions with, and afterwards always closes every session. When
//! the scenario fails (an error, a panic, or the overall [`GUARD`]), it first saves a screenshot
//! of each session and reads the page's status/messages for the panic message.
//!
//! Waiting is by polling the DOM with a short interval inside a deadline ([`wait_until`]); nothing
//! sleeps to "let things happen".

use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// What a scenario returns; `?` takes WebDriver errors and `String`s alike.
pub type Outcome<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

/// How long one wait for the page ([`wait_until`]) may take.
pub const WAIT: Duration = Duration::from_secs(15);
/// The polling interval of [`wait_until`].
const POLL: Duration = Duration::from_millis(50);
/// Overall bound of one scenario's body.
pub const GUARD: Duration = Duration::from_secs(60);
/// How long chromedriver may take to say it is listening.
const DRIVER_STARTUP: Duration = Duration::from_secs(20);
/// Bound of each WebDriver command of the cleanup (screenshots, closing sessions).
const CLEANUP: Duration = Duration::from_secs(10);

/// The environment variable that turns a missing browser from a skip into a failure.
const REQUIRE_VAR: &str = "TIDINGS_BROWSER_TESTS";

/// Chromium's command line for every session; `--user-data-dir` is added per session.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,750",
];

/// Runs one browser scenario named `scenario` (the name of its screenshots): `body` opens
/// sessions through the [`Browser`] it is given and returns `Err` (or panics) on failure.
///
/// Skips (prints why, returns) when chromedriver or chromium is missing, unless
/// `TIDINGS_BROWSER_TESTS=require`. Every session is closed before this returns or panics; a
/// failure panics with the error, the pages' state and the chromedriver log, after saving
/// `target/screenshots/<scenario>-failure.png` (`…-failure-<label>.png` for the second and
/// later sessions).
pub async fn run<F>(scenario: &'static str, body: F)
where
    F: AsyncFnOnce(&Browser) -> Outcome,
{
    let tools = match Tools::find() {
        Ok(tools) => tools,
        Err(why) => {
            if std::env::var(REQUIRE_VAR).as_deref() == Ok("require") {
                panic!(
                    "browser tests are required ({REQUIRE_VAR}=require) but cannot run: {why}; \
                     install chromium and chromium-driver (apt-get install chromium \
                     chromium-driver) or point CHROMEDRIVER and CHROMIUM at them"
                );
            }
            println!(
                "browser tests skipped: chromedriver/chromium not found \
                 (set {REQUIRE_VAR}=require to fail instead)\n  ({why})"
            );
            return;
        }
    };
    let started = Instant::now();
    let browser = {
        let tools = tools.clone();
        tokio::task::spawn_blocking(move || Browser::start(scenario, tools))
            .await
            .expect("starting chromedriver panicked")
    };
    let browser = browser.unwrap_or_else(|e| panic!("{scenario}: {e}"));
    println!(
        "{scenario}: chromedriver {} on port {} ({} ms), chromium {}",
        tools.chromedriver.display(),
        browser.driver.port,
        started.elapsed().as_millis(),
        tools.chromium.display()
    );

    let outcome = AssertUnwindSafe(tokio::time::timeout(GUARD, body(&browser)))
        .catch_unwind()
        .await;
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_elapsed)) => Err(format!("the scenario took longer than {GUARD:?}").into()),
        Err(panic) => Err(format!("panicked: {}", panic_message(&*panic)).into()),
    };
    let report = match &outcome {
        Ok(()) => String::new(),
        Err(_) => browser.failure_report().await,
    };
    browser.close_sessions().await;
    if let Err(e) = outcome {
        panic!(
            "browser scenario `{scenario}` failed: {e}\n{report}\n--- chromedriver log (last \
             lines)\n{}",
            browser.driver.log_tail()
        );
    }
    println!(
        "{scenario}: passed in {} ms (chromedriver start to sessions closed)",
        started.elapsed().as_millis()
    );
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic)".to_owned()
    }
}

/// The two programs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub chromedriver: PathBuf,
    pub chromium: PathBuf,
}

impl Tools {
    /// `CHROMEDRIVER` / `CHROMIUM` when set, else the first on `PATH`, else `/usr/bin/...`;
    /// `Err` says what is missing.
    pub fn find() -> Result<Self, String> {
        let chromedriver = locate("CHROMEDRIVER", &["chromedriver"]);
        let chromium = locate("CHROMIUM", &["chromium", "chromium-browser"]);
        match (chromedriver, chromium) {
            (Ok(chromedriver), Ok(chromium)) => Ok(Self {
                chromedriver,
                chromium,
            }),
            (Err(a), Err(b)) => Err(format!("{a}; {b}")),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }
}

fn locate(var: &str, names: &[&str]) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "{var}={} is not an executable file",
                path.display()
            ))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    for name in names {
        for dir in on_path.iter().chain([&PathBuf::from("/usr/bin")]) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "{} not found on PATH nor in /usr/bin (and {var} is not set)",
        names.join("/")
    ))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// A chromedriver child process of this test, on `port`. Dropping it asks chromedriver to shut
/// down (which quits the browsers it still runs), then kills it if it has not exited shortly.
pub struct ChromeDriver {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

/// How many lines of chromedriver's output are kept for failure messages.
const LOG_LINES: usize = 60;

impl ChromeDriver {
    /// Starts `path --port=<free port>` and returns once it printed that it started; a start
    /// that fails early (a port taken in between) is retried on another port.
    fn start(path: &Path) -> Result<Self, String> {
        let deadline = Instant::now() + DRIVER_STARTUP;
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port().map_err(|e| format!("no free loopback port: {e}"))?;
            let mut child = Command::new(path)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
            let log = Arc::new(Mutex::new(Vec::new()));
            let (ready_tx, ready_rx) = mpsc::channel();
            if let Some(stdout) = child.stdout.take() {
                drain(stdout, log.clone(), Some(ready_tx));
            }
            if let Some(stderr) = child.stderr.take() {
                drain(stderr, log.clone(), None);
            }
            let driver = Self { child, port, log };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(remaining) {
                Ok(()) => return Ok(driver),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "chromedriver did not report a start within {DRIVER_STARTUP:?}:\n{}",
                        driver.log_tail()
                    ));
                }
                // Its output ended without the line: it exited; dropping `driver` reaps it.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    last_error = format!(
                        "chromedriver exited before it started (port {port}):\n{}",
                        driver.log_tail()
                    );
                }
            }
        }
        Err(last_error)
    }

    /// The last lines chromedriver printed.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.is_empty() {
            "(nothing)".to_owned()
        } else {
            log.join("\n")
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // chromedriver's own endpoint: it quits the browsers it still runs and exits.
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
                let _ = write!(
                    stream,
                    "GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.port
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() >= deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.wait();
    }
}

/// Reads `output` line by line on a thread into `log` (its last [`LOG_LINES`]), signalling
/// `ready` at chromedriver's start line. Runs until the pipe closes, so chromedriver never
/// blocks on a full pipe.
fn drain(
    output: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    mut ready: Option<mpsc::Sender<()>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if line.contains("ChromeDriver was started successfully")
                && let Some(ready) = ready.take()
            {
                let _ = ready.send(());
            }
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == LOG_LINES {
                log.remove(0);
            }
            log.push(line);
        }
    });
}

/// A loopback port nobody listens on right now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The chromedriver of one scenario and the sessions opened on it.
pub struct Browser {
    scenario: &'static str,
    tools: Tools,
    // Dropped before `profiles`: the browsers are gone before their profile folders are removed.
    driver: ChromeDriver,
    sessions: Mutex<Vec<(String, Client)>>,
    profiles: Profiles,
}

impl Browser {
    fn start(scenario: &'static str, tools: Tools) -> Result<Self, String> {
        let driver = ChromeDriver::start(&tools.chromedriver)?;
        Ok(Self {
            scenario,
            profiles: Profiles::new(scenario)?,
            tools,
            driver,
            sessions: Mutex::new(Vec::new()),
        })
    }

    /// A new browser (its own headless chromium with a fresh profile folder), `label` naming it
    /// in failure reports. It is closed by [`run`] at the end.
    pub async fn session(&self, label: &str) -> Outcome<Client> {
        let profile = self.profiles.create(label)?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&a| a.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": self.tools.chromium,
                "args": args,
            },
            // The secure pages use a self-signed certificate.
            "acceptInsecureCerts": true,
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.driver.url())
            .await
            .map_err(|e| format!("{}: new WebDriver session `{label}`: {e}", self.scenario))?;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((label.to_owned(), client.clone()));
        Ok(client)
    }

    /// Saves `client`'s window as `target/screenshots/<name>.png` and prints where.
    pub async fn screenshot(&self, client: &Client, name: &str) -> Outcome<PathBuf> {
        let png = client.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|e| format!("write {}: {e}", path.display()))?;
        println!("{}: screenshot {}", self.scenario, path.display());
        Ok(path)
    }

    fn sessions(&self) -> Vec<(String, Client)> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Each session's URL, status and messages (whichever of the pages' elements exist), after a
    /// failure screenshot of each.
    async fn failure_report(&self) -> String {
        let mut report = String::new();
        for (i, (label, client)) in self.sessions().into_iter().enumerate() {
            let name = if i == 0 {
                format!("{}-failure", self.scenario)
            } else {
                format!("{}-failure-{label}", self.scenario)
            };
            let shot = match tokio::time::timeout(CLEANUP, self.screenshot(&client, &name)).await {
                Ok(Ok(path)) => path.display().to_string(),
                Ok(Err(e)) => format!("(no screenshot: {e})"),
                Err(_) => "(no screenshot: timed out)".to_owned(),
            };
            report.push_str(&format!("--- session `{label}`, screenshot {shot}\n"));
            let state = tokio::time::timeout(CLEANUP, page_state(&client)).await;
            report.push_str(&state.unwrap_or_else(|_| "(page state: timed out)\n".to_owned()));
        }
        report
    }

    async fn close_sessions(&self) {
        let sessions =
            std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|e| e.into_inner()));
        for (label, client) in sessions {
            match tokio::time::timeout(CLEANUP, client.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("{}: closing session `{label}`: {e}", self.scenario),
                Err(_) => eprintln!("{}: closing session `{label}` timed out", self.scenario),
            }
        }
    }
}

/// The elements of the example pages worth seeing in a failure message.
const STATE_IDS: &[&str] = &["status", "messages", "clients", "log"];

async fn page_state(client: &Client) -> String {
    let mut state = match client.current_url().await {
        Ok(url) => format!("url: {url}\n"),
        Err(e) => format!("url: ({e})\n"),
    };
    for id in STATE_IDS {
        match text_of(client, &format!("#{id}")).await {
            Ok(Some(text)) => {
                let text: String = text.chars().take(3000).collect();
                state.push_str(&format!("#{id}:\n{text}\n"));
            }
            Ok(None) => {}
            Err(e) => state.push_str(&format!("#{id}: ({e})\n")),
        }
    }
    state
}

/// The per-session profile folders (`--user-data-dir`) of one scenario, removed on drop.
struct Profiles {
    root: PathBuf,
    next: AtomicUsize,
}

impl Profiles {
    fn new(scenario: &str) -> Result<Self, String> {
        let root =
            std::env::temp_dir().join(format!("tidings-browser-{}-{scenario}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        Ok(Self {
            root,
            next: AtomicUsize::new(0),
        })
    }

    fn create(&self, label: &str) -> Result<PathBuf, String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(format!("{n}-{label}"));
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Profiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `target/screenshots` of the workspace: under `CARGO_TARGET_DIR` when set (a relative one
/// taken from the workspace root), else `<workspace>/target`.
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("screenshots")
}

/// One look at the page: done with a value, or not yet, saying what was seen.
pub enum Probe<T> {
    Ready(T),
    NotYet(String),
}

/// Polls `probe` every [`POLL`] until it is [`Probe::Ready`]; after [`WAIT`], fails naming
/// `what` and the last thing the probe saw. A WebDriver error ends the wait at once.
pub async fn wait_until<T>(
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<Probe<T>, CmdError>,
) -> Outcome<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = match probe().await? {
            Probe::Ready(value) => return Ok(value),
            Probe::NotYet(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(format!("waited {WAIT:?} for {what}; last seen: {seen}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The rendered text of the first element matching `css`, `None` when there is none (or it was
/// replaced while being read).
pub async fn text_of(client: &Client, css: &str) -> Result<Option<String>, CmdError> {
    let element = match client.find(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) if e.is_no_such_element() => return Ok(None),
        Err(e) => return Err(e),
    };
    match element.text().await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_stale_element_reference() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The rendered texts of all elements matching `css` (those replaced while being read left out).
pub async fn texts_of(client: &Client, css: &str) -> Result<Vec<String>, CmdError> {
    let mut texts = Vec::new();
    for element in client.find_all(Locator::Css(css)).await? {
        match element.text().await {
            Ok(text) => texts.push(text),
            Err(e) if e.is_stale_element_reference() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(texts)
}

/// Waits until the element `css` exists and its text is `expected`.
pub async fn wait_for_text(client: &Client, css: &str, expected: &str) -> Outcome {
    wait_until(&format!("{css} to read {expected:?}"), async || {
        Ok(match text_of(client, css).await? {
            Some(text) if text.trim() == expected => Probe::Ready(()),
            Some(text) => Probe::NotYet(format!("{text:?}")),
            None => Probe::NotYet(format!("no {css}")),
        })
    })
    .await
}
