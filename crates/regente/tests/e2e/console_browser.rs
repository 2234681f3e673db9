//! A real headless Chromium for the console tests, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`): a small client of the W3C
//! protocol's few commands the tests use, over the blocking HTTP client the
//! other tests use. A browser dropped while its test panics saves a screenshot
//! under the target directory and prints its path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C name of an element reference in answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a page may take to show what a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    driver: Child,
    client: Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    /// The test's name, for the failure screenshot.
    name: String,
    user_data: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct Element(String);

/// Panics with how to install the browser when it is missing.
fn check_installed() {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            Path::new(path).exists(),
            "the console's browser tests need {path}: install it with `apt-get install {package}` (.ci/run does)"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a 1280 x 900 window.
    pub fn start(name: &str) -> Browser {
        check_installed();
        let port = free_port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // It prints a line once it listens.
        let stdout = driver.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        while started.elapsed() < PAGE_WAIT {
            match lines.next() {
                Some(Ok(line)) if line.contains("started successfully") => break,
                Some(Ok(_)) => continue,
                _ => panic!("chromedriver stopped before it listened"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let client = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client");
        let user_data = tempfile::Builder::new()
            .prefix("regente-chromium-")
            .tempdir()
            .expect("a profile directory");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            "--lang=en-US".to_owned(),
            format!("--user-data-dir={}", user_data.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer: Value = client
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&capabilities)
            .send()
            .and_then(|r| r.json())
            .expect("chromedriver answers the new session");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Browser {
            driver,
            client,
            session: format!("http://127.0.0.1:{port}/session/{id}"),
            name: name.to_owned(),
            user_data,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let request = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self
                .client
                .post(url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let answer: Value = match request.send().and_then(|r| r.json()) {
            Ok(answer) => answer,
            Err(e) => return Err(json!({"error": "transport", "message": e.to_string()})),
        };
        let value = answer["value"].clone();
        if value.get("error").is_some() {
            Err(value)
        } else {
            Ok(value)
        }
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.must("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn find(&self, css: &str) -> Option<Element> {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .ok()
            .and_then(|v| v[ELEMENT].as_str().map(|id| Element(id.to_owned())))
    }

    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.must(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v[ELEMENT].as_str().map(|id| Element(id.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for an element to be on the page.
    pub fn wait(&self, css: &str) -> Element {
        self.wait_until(&format!("an element {css:?}"), || self.find(css))
    }

    /// Polls `probe` until it answers `Some`; panics after [`PAGE_WAIT`].
    pub fn wait_until<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(found) = probe() {
                return found;
            }
            assert!(
                started.elapsed() < PAGE_WAIT,
                "timed out waiting for {what} on {}; the page reads:\n{}",
                self.url(),
                self.body_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn click(&self, element: &Element) {
        self.must("POST", &format!("/element/{}/click", element.0), None);
    }

    pub fn click_css(&self, css: &str) {
        let element = self.wait(css);
        self.click(&element);
    }

    /// Replaces an input's text.
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.wait(css);
        self.must("POST", &format!("/element/{}/clear", element.0), None);
        self.type_into(&element, text);
    }

    pub fn type_into(&self, element: &Element, text: &str) {
        self.must(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        );
    }

    pub fn text(&self, element: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", element.0), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn text_of(&self, css: &str) -> Option<String> {
        self.find(css).map(|element| self.text(&element))
    }

    pub fn body_text(&self) -> String {
        self.text_of("body").unwrap_or_default()
    }

    /// Runs a script in the page and answers its value.
    pub fn script(&self, script: &str) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.must(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// The browser's cookies as `name=value` pairs.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.must("GET", "/cookie", None)
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|c| {
                        let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
                        (field("name"), field("value"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves the viewport as a PNG.
    pub fn screenshot(&self, path: &Path) {
        let data = self.must("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot's directory");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }
}

/// Where the tests' screenshots go: `target/tmp/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Nothing here may panic again (that would abort the test run).
            let path = screenshot_dir().join(format!("FAILED-{}.png", self.name));
            let png = self.call("GET", "/screenshot", None).ok().and_then(|data| {
                base64::engine::general_purpose::STANDARD
                    .decode(data.as_str().unwrap_or_default())
                    .ok()
            });
            if let Some(png) = png {
                let _ = std::fs::create_dir_all(screenshot_dir());
                if std::fs::write(&path, png).is_ok() {
                    eprintln!("screenshot of the failure: {}", path.display());
                }
            }
        }
        let _ = self.call("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = &self.user_data;
    }
}
