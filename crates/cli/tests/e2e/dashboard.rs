//! The web dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against real nodes on a real broker. The pages show real fleet data,
//! a command sent from the page runs on the node chosen and its result arrives live,
//! container and fault-experiment actions act on real containers, and a stranger is
//! refused. Each page is saved as a screenshot: into `BOSUN_SCREENSHOTS` when set
//! (`scripts/screenshots` sets it to `docs/screenshots`), else into the test's folder.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bosun_testkit::{NodeSpec, eventually};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{DockerCleanup, docker, fleet, stderr, unique};

const TOKEN: &str = "dashboard-test-token-0123456789";

/// chromedriver on a free loopback port in a process group of its own, with the
/// browsers it starts; the whole group is killed when dropped, also when a test fails
/// half-way, so no browser outlives its test. Browsers keep their profile in `profiles`.
struct Driver {
    child: Child,
    port: u16,
    profiles: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start chromedriver, or `None` (the test then returns) when it is not installed and
/// no real browser is required.
fn driver(dir: &Path) -> Option<Driver> {
    use std::os::unix::process::CommandExt;
    let Ok(path) = which("chromedriver") else {
        assert!(
            std::env::var_os("BOSUN_REQUIRE_DOCKER").is_none(),
            "chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: no chromedriver");
        return None;
    };
    let port = bosun_testkit::free_port();
    let profiles = dir.join("browser-profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .process_group(0)
        // The browsers' own temporary files stay in the test's folder too.
        .env("TMPDIR", &profiles)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    eventually(Duration::from_secs(20), "chromedriver listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    Some(Driver {
        child,
        port,
        profiles,
    })
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// A headless Chromium session with a desktop window.
async fn browser(driver: &Driver, width: u32, height: u32) -> Client {
    session(
        driver,
        json!({ "args": args(driver, &format!("--window-size={width},{height}")) }),
    )
    .await
}

/// A headless Chromium session that renders as a phone does (a 390 px wide screen that
/// honours the page's viewport).
async fn phone(driver: &Driver) -> Client {
    session(
        driver,
        json!({
            "args": args(driver, "--window-size=390,844"),
            "mobileEmulation": { "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2.0, "touch": true } },
        }),
    )
    .await
}

fn args(driver: &Driver, size: &str) -> Vec<String> {
    let profile = driver.profiles.join(bosun_testkit::free_port().to_string());
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--lang=en-GB",
        size,
    ]
    .map(str::to_string)
    .into_iter()
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

async fn session(driver: &Driver, options: Value) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

/// Poll `check` in the page until it returns `Some`, or panic after `timeout`.
async fn until<T>(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Run a script in the page and return its value.
async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.expect(script)
}

/// Where screenshots go.
fn shots_dir(fallback: &Path) -> PathBuf {
    let dir = std::env::var_os("BOSUN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| fallback.join("screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Save the page as `name.png` and check it is a real, non-trivial PNG.
async fn shoot(client: &Client, dir: &Path, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
    assert!(
        png.len() > 10_000,
        "{name} shows a page ({} bytes)",
        png.len()
    );
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Every form control of the page has a label (keyboard and screen reader users).
async fn every_control_labelled(client: &Client) {
    let unlabelled = js(
        client,
        "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]
            .filter(i => i.labels.length === 0 && !i.getAttribute('aria-label'))
            .map(i => i.name || i.id);",
    )
    .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
}

/// Log in through the form.
async fn log_in(client: &Client, base: &str, token: &str) {
    client.goto(&format!("{base}/ui/login")).await.unwrap();
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    client
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// A plain HTTP request without following redirects: (status, Location, body).
fn raw(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let answer = if method == "GET" {
        let mut r = agent.get(url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.call()
    } else {
        let mut r = agent.post(url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send(body)
    }
    .expect("an answer");
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let status = answer.status().as_u16();
    let text = answer.into_body().read_to_string().unwrap_or_default();
    (status, location, text)
}

#[test]
fn a_stranger_sees_only_the_login_and_can_do_nothing() {
    let central = unique("dsa");
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let Some(fleet) = fleet()
        .central(&central)
        .node(
            NodeSpec::new(&central)
                .env("BOSUN_HTTP_LISTEN", address.as_str())
                .env("BOSUN_HTTP_TOKEN", TOKEN),
        )
        .start()
    else {
        return;
    };
    let base = format!("http://{address}");
    // Pages send a stranger to the login, saying where to return.
    let (code, location, body) = raw("GET", &format!("{base}/"), &[], "");
    assert_eq!(
        (code, location.as_str()),
        (303, "/ui/login?next=%2F"),
        "{body}"
    );
    assert!(!body.contains(&central), "no fleet data before login");
    let (code, location, _) = raw("GET", &format!("{base}/ui/messages?node=x"), &[], "");
    assert_eq!(code, 303);
    assert_eq!(location, "/ui/login?next=%2Fui%2Fmessages%3Fnode%3Dx");
    // The live stream and every action answer 401; nothing is queued.
    for (method, path) in [
        ("GET", "/ui/live?view=%2F"),
        ("POST", "/ui/send"),
        ("POST", "/ui/containers/abc/kill"),
        ("POST", "/ui/chaos/x/abort"),
    ] {
        let (code, _, body) = raw(method, &format!("{base}{path}"), &[], "node=a&command=id");
        assert_eq!(code, 401, "{method} {path}: {body}");
    }
    // A wrong token, as a bearer or a cookie, is no better; a forged cookie is not a session.
    let (code, _, _) = raw(
        "GET",
        &format!("{base}/"),
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(code, 303);
    let (code, _, _) = raw(
        "GET",
        &format!("{base}/"),
        &[("Cookie", "bosun_session=00ff00ff")],
        "",
    );
    assert_eq!(code, 303);
    // The login form refuses a wrong token and sets no cookie.
    let (code, location, _) = raw(
        "POST",
        &format!("{base}/ui/login"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=wrong&next=%2F",
    );
    assert_eq!(
        (code, location.as_str()),
        (303, "/ui/login?failed=1&next=%2F")
    );
    // The right token: a session cookie that is HttpOnly and SameSite=Strict, and the
    // page that was asked for.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let answer = agent
        .post(&format!("{base}/ui/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send("token=dashboard-test-token-0123456789&next=%2Fui%2Fmessages")
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    assert_eq!(answer.headers()["location"], "/ui/messages");
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let (code, _, body) = raw("GET", &format!("{base}/"), &[("Cookie", &session)], "");
    assert_eq!(code, 200);
    assert!(body.contains(&central), "the fleet page names the node");
    // With the session, an action posted from another site is refused, and nothing runs.
    let (code, _, body) = raw(
        "POST",
        &format!("{base}/ui/send"),
        &[
            ("Cookie", &session),
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("node={central}&command=id"),
    );
    assert_eq!(code, 403, "{body}");
    let (_, _, messages) = raw(
        "GET",
        &format!("{base}/ui/messages"),
        &[("Cookie", &session)],
        "",
    );
    assert!(messages.contains("id=\"messages\""), "{messages}");
    assert!(
        !messages.contains("data-id="),
        "nothing was sent: {messages}"
    );
    // Logging out ends the session.
    let (code, _, _) = raw(
        "POST",
        &format!("{base}/ui/logout"),
        &[("Cookie", &session), ("Origin", &base)],
        "",
    );
    assert_eq!(code, 303);
    let (code, _, _) = raw("GET", &format!("{base}/"), &[("Cookie", &session)], "");
    assert_eq!(code, 303, "the session is gone");
    // Cancel over /v1: a command for a node that has never been up is cancelled; a
    // second try is a conflict, an unknown id is not found.
    let ghost = unique("ghost");
    let id = crate::support::exec_no_wait(fleet.node(&central), &ghost, &["true"]);
    let bearer = format!("Bearer {TOKEN}");
    let cancel = |id: &str| {
        raw(
            "POST",
            &format!("{base}/v1/messages/{id}/cancel"),
            &[("Authorization", bearer.as_str())],
            "",
        )
    };
    let (code, _, body) = cancel(&id);
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["outcome"], "cancelled", "{answer}");
    assert_eq!(answer["id"], id.as_str());
    let (code, _, body) = cancel(&id);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("cancelled already"), "{body}");
    assert_eq!(cancel("01NOSUCHMESSAGE0000000000").0, 404);
    assert_eq!(
        crate::support::report(fleet.node(&central), &id)["sent"]["state"],
        "cancelled"
    );
    // The API's own token check is unchanged: /v1 still needs the bearer.
    let (code, _, _) = raw(
        "GET",
        &format!("{base}/v1/nodes"),
        &[("Cookie", &session)],
        "",
    );
    assert_eq!(code, 401);
    // Guessing is cut short: after 10 failed logins in a minute (one failed above), even
    // the right token is refused at the form for a while; the bearer token still works.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for _ in 0..9 {
        let (code, _, _) = raw("POST", &format!("{base}/ui/login"), &form, "token=guess");
        assert_eq!(code, 303);
    }
    let (code, _, body) = raw(
        "POST",
        &format!("{base}/ui/login"),
        &form,
        &format!("token={TOKEN}"),
    );
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("Wait a minute"), "{body}");
    let (code, _, _) = raw(
        "GET",
        &format!("{base}/"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_eq!(code, 200);
}

#[test]
fn fleet_and_messages_pages_show_real_nodes_and_a_command_sent_from_the_page_runs() {
    let (central, ship1, ship2, ship3) =
        (unique("dsc"), unique("ds1"), unique("ds2"), unique("ds3"));
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let Some(mut fleet) = fleet()
        .central(&central)
        .node(
            NodeSpec::new(&central)
                .env("BOSUN_HTTP_LISTEN", address.as_str())
                .env("BOSUN_HTTP_TOKEN", TOKEN),
        )
        .node(NodeSpec::new(&ship1).env("BOSUN_LABELS", "site=harbour,role=edge"))
        .node(NodeSpec::new(&ship2))
        .start()
    else {
        return;
    };
    let Some(driver) = driver(fleet.dir()) else {
        return;
    };
    let base = format!("http://{address}");
    let shots = shots_dir(fleet.dir());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = browser(&driver, 1280, 860).await;
        // A stranger lands on the login page.
        client.goto(&format!("{base}/")).await.unwrap();
        let url = client.current_url().await.unwrap();
        assert_eq!(url.path(), "/ui/login", "{url}");
        assert!(!client.source().await.unwrap().contains(&ship1));
        log_in(&client, &base, "not-the-token").await;
        until(Duration::from_secs(10), "the login says the token is wrong", async || {
            client.find(Locator::Css("p.error")).await.ok().map(|_| ())
        })
        .await;
        log_in(&client, &base, TOKEN).await;

        // The fleet: every node alive with its inventory.
        until(Duration::from_secs(30), "three nodes alive on the page", async || {
            let alive = js(&client, "return document.querySelectorAll('#fleet tr[data-node] .state.alive').length").await;
            (alive == json!(3)).then_some(())
        })
        .await;
        let row = js(
            &client,
            &format!("return document.querySelector('tr[data-node=\"{ship1}\"]').innerText"),
        )
        .await;
        let row = row.as_str().unwrap().to_string();
        assert!(row.contains("linux"), "{row}");
        assert!(row.contains("role=edge") && row.contains("site=harbour"), "{row}");
        assert!(row.contains("GiB"), "{row}");
        assert!(row.contains("outbox"), "the queue depth is shown: {row}");
        assert!(
            row.contains("verified, issuer O"),
            "the identity its seal proved: {row}"
        );
        every_control_labelled(&client).await;
        shoot(&client, &shots, "fleet").await;

        // Live: a node that joins appears without a reload.
        js(&client, "window.notReloaded = true; return null;").await;
        fleet.add(NodeSpec::new(&ship3));
        until(Duration::from_secs(30), "the new node appears live", async || {
            let seen = js(
                &client,
                &format!("return !!document.querySelector('tr[data-node=\"{ship3}\"]') && window.notReloaded === true"),
            )
            .await;
            (seen == json!(true)).then_some(())
        })
        .await;

        // Send a command to ship1 alone from the page.
        let marker = unique("dashboard-ran-");
        // (The form lists the nodes known when the page was loaded.)
        for checkbox in client
            .find_all(Locator::Css("input[name=node]:checked"))
            .await
            .unwrap()
        {
            if checkbox.attr("value").await.unwrap().as_deref() != Some(ship1.as_str()) {
                checkbox.click().await.unwrap();
            }
        }
        let box1 = client
            .find(Locator::Css(&format!("input[name=node][value=\"{ship1}\"]")))
            .await
            .unwrap();
        if box1.prop("checked").await.unwrap().as_deref() != Some("true") {
            box1.click().await.unwrap();
        }
        client
            .find(Locator::Id("command"))
            .await
            .unwrap()
            .send_keys(&format!("echo {marker}"))
            .await
            .unwrap();
        client
            .find(Locator::Css("form.send button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let url = until(Duration::from_secs(10), "the send's messages page", async || {
            let url = client.current_url().await.ok()?;
            (url.path() == "/ui/messages").then_some(url)
        })
        .await;
        let ids = url
            .query_pairs()
            .find(|(k, _)| k == "ids")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert!(!ids.contains(','), "one message, to ship1 only: {ids}");
        let id = ids.clone();
        // The result arrives on the open page.
        until(Duration::from_secs(30), "the result arrives live", async || {
            let state = js(
                &client,
                &format!("const r = document.querySelector('tr[data-id=\"{id}\"]'); return r ? [r.dataset.state, r.innerText] : null;"),
            )
            .await;
            (state[0] == "done").then(|| state[1].as_str().unwrap_or("").to_string())
        })
        .await
        .contains(&marker)
        .then_some(())
        .expect("the row shows the command's output");
        let row = js(&client, &format!("return document.querySelector('tr[data-id=\"{id}\"]').innerText")).await;
        assert!(row.as_str().unwrap().contains(&ship1), "{row}");
        shoot(&client, &shots, "messages").await;
        // It ran on ship1, and only there: ship1 recorded it as received and done.
        let received = fleet.node(&ship1).cli(&["status", "--json", &id]);
        let received: Value = serde_json::from_slice(&received.stdout).unwrap();
        assert_eq!(received["received"]["state"], "done", "{received}");
        assert_eq!(received["received"]["outcome"]["stdout"], format!("{marker}\n"));

        // One message: its timeline and result.
        client
            .find(Locator::Css(&format!("tr[data-id=\"{id}\"] a")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(Duration::from_secs(10), "the message page", async || {
            client.find(Locator::Id("stdout")).await.ok().map(|_| ())
        })
        .await;
        let steps = js(&client, "return [...document.querySelectorAll('#timeline li .state')].map(s => s.innerText)").await;
        let steps: Vec<String> = serde_json::from_value(steps).unwrap();
        for state in ["queued", "sent", "done"] {
            assert!(steps.iter().any(|s| s == state), "{state} in the timeline: {steps:?}");
        }
        let stdout = js(&client, "return document.getElementById('stdout').innerText").await;
        assert_eq!(stdout.as_str().unwrap().trim(), marker);
        shoot(&client, &shots, "message").await;
        // A finished message offers no cancel; a queued one does, and it works.
        assert!(client.find(Locator::Id("cancel")).await.is_err());
        let ghost = unique("ghost");
        let queued = crate::support::exec_no_wait(fleet.node(&central), &ghost, &["true"]);
        client
            .goto(&format!("{base}/ui/messages/{queued}"))
            .await
            .unwrap();
        client
            .find(Locator::Id("cancel"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let notice = until(Duration::from_secs(30), "the cancel's notice", async || {
            let n = client.find(Locator::Css("p.notice")).await.ok()?;
            n.text().await.ok()
        })
        .await;
        assert!(notice.starts_with("cancelled"), "{notice}");
        until(Duration::from_secs(10), "the page shows it cancelled", async || {
            let state = js(&client, "const s = document.getElementById('state'); return s && s.innerText").await;
            (state == "cancelled").then_some(())
        })
        .await;

        // Filters: by node and state.
        client
            .goto(&format!("{base}/ui/messages?node={ship2}&state=done"))
            .await
            .unwrap();
        let rows = js(&client, "return document.querySelectorAll('#messages tr[data-id]').length").await;
        assert_eq!(rows, json!(0), "nothing was sent to ship2");
        client
            .goto(&format!("{base}/ui/messages?node={ship1}&method=cliCommand"))
            .await
            .unwrap();
        let shown = js(&client, "return [...document.querySelectorAll('#messages tr[data-id]')].map(r => r.dataset.id)").await;
        assert_eq!(shown, json!([id]));
        every_control_labelled(&client).await;

        client.close().await.unwrap();

        // On a phone: nothing wider than the screen but the tables' own scrolling.
        let client = phone(&driver).await;
        log_in(&client, &base, TOKEN).await;
        until(Duration::from_secs(10), "the fleet page on the phone", async || {
            client.find(Locator::Id("fleet")).await.ok().map(|_| ())
        })
        .await;
        let overflow = js(&client, "return document.documentElement.scrollWidth - window.innerWidth").await;
        let wide = js(
            &client,
            "return [...document.querySelectorAll('body *')]
                .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > window.innerWidth + 1)
                .map(e => e.tagName + '.' + e.className + '#' + e.id);",
        )
        .await;
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "the fleet page fits a phone: {overflow} px too wide: {wide}"
        );
        shoot(&client, &shots, "fleet-phone").await;
        client.close().await.unwrap();
    });
}

#[test]
fn containers_and_a_fault_experiment_are_driven_from_the_page() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let (central, ship) = (unique("dcc"), unique("dcs"));
    let (box1, box2) = (unique("dash1-"), unique("dash2-"));
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: vec![central.clone(), ship.clone()],
    };
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let Some(fleet) = fleet()
        .central(&central)
        .node(
            NodeSpec::new(&central)
                .env("BOSUN_HTTP_LISTEN", address.as_str())
                .env("BOSUN_HTTP_TOKEN", TOKEN),
        )
        .node(NodeSpec::new(&ship))
        .start()
    else {
        return;
    };
    for name in [&box1, &box2] {
        let out = fleet.node(&central).cli(&[
            "container",
            "run",
            "-n",
            &ship,
            "--name",
            name,
            &image,
            "--",
            "sleep",
            "600",
        ]);
        assert!(out.status.success(), "container run: {}", stderr(&out));
    }
    let Some(driver) = driver(fleet.dir()) else {
        return;
    };
    let base = format!("http://{address}");
    let shots = shots_dir(fleet.dir());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = browser(&driver, 1280, 860).await;
        log_in(&client, &base, TOKEN).await;
        client.goto(&format!("{base}/ui/containers")).await.unwrap();
        let row = format!("#containers tr[data-container=\"{box1}\"]");
        until(Duration::from_secs(30), "the container is listed running", async || {
            let state = js(&client, &format!("const r = document.querySelector('{row}'); return r && r.dataset.state")).await;
            (state == "running").then_some(())
        })
        .await;
        let text = js(&client, &format!("return document.querySelector('{row}').innerText")).await;
        assert!(text.as_str().unwrap().contains(&ship), "listed under its node: {text}");
        shoot(&client, &shots, "containers").await;

        // Pause from the page: Docker says paused, and the page says so.
        client
            .find(Locator::Css(&format!("{row} button[aria-label=\"pause {box1}\"]")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let notice = until(Duration::from_secs(30), "the pause's notice", async || {
            let n = client.find(Locator::Css("p.notice")).await.ok()?;
            n.text().await.ok()
        })
        .await;
        assert!(notice.contains("pause") && notice.contains("done"), "{notice}");
        assert_eq!(docker(&["inspect", "-f", "{{.State.Paused}}", &box1]), "true");
        until(Duration::from_secs(30), "the page shows it paused", async || {
            let state = js(&client, &format!("const r = document.querySelector('{row}'); return r && r.dataset.state")).await;
            (state == "paused").then_some(())
        })
        .await;
        client
            .find(Locator::Css(&format!("{row} button[aria-label=\"unpause {box1}\"]")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(Duration::from_secs(30), "unpaused", async || {
            (docker(&["inspect", "-f", "{{.State.Paused}}", &box1]) == "false").then_some(())
        })
        .await;

        // A fault experiment with a long lease: listed, charted, and aborted from the page.
        let scenario = fleet.dir().join("pause.yaml");
        std::fs::write(
            &scenario,
            format!("duration: 10m\nevents:\n  - at: 0s\n    action: pause\n    target: {{container: {box2}}}\n  - at: 5m\n    action: kill\n    target: {{container: {box2}}}\n"),
        )
        .unwrap();
        let out = fleet
            .node(&central)
            .cli(&["chaos", "run", scenario.to_str().unwrap(), "--start-in", "1"]);
        assert!(out.status.success(), "chaos run: {}", stderr(&out));
        until(Duration::from_secs(30), "the fault is in place", async || {
            (docker(&["inspect", "-f", "{{.State.Paused}}", &box2]) == "true").then_some(())
        })
        .await;
        client.goto(&format!("{base}/ui/chaos")).await.unwrap();
        let experiment = until(Duration::from_secs(30), "the experiment is listed", async || {
            let id = js(&client, "const r = document.querySelector('#experiments tr[data-experiment]'); return r && r.dataset.experiment").await;
            id.as_str().map(str::to_string)
        })
        .await;
        shoot(&client, &shots, "chaos").await;
        client
            .find(Locator::Css(&format!("tr[data-experiment=\"{experiment}\"] a")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(Duration::from_secs(30), "the chart and the applied fault", async || {
            let ok = js(&client, "return !!document.querySelector('#chart svg') && !!document.querySelector('#events tr[data-state=applied]')").await;
            (ok == json!(true)).then_some(())
        })
        .await;
        shoot(&client, &shots, "experiment").await;
        client
            .find(Locator::Id("abort"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let notice = until(Duration::from_secs(30), "the abort's notice", async || {
            let n = client.find(Locator::Css("p.notice")).await.ok()?;
            n.text().await.ok()
        })
        .await;
        assert!(
            notice.contains("1 fault(s) undone, 1 pending event(s) dropped"),
            "{notice}"
        );
        assert_eq!(docker(&["inspect", "-f", "{{.State.Paused}}", &box2]), "false");
        until(Duration::from_secs(30), "the page shows the fault undone", async || {
            let states = js(&client, "return [...document.querySelectorAll('#events tr')].map(r => r.dataset.state).filter(Boolean)").await;
            let states: Vec<String> = serde_json::from_value(states).ok()?;
            (states.contains(&"undone".to_string()) && states.contains(&"aborted".to_string()))
                .then_some(())
        })
        .await;
        client.close().await.unwrap();
    });
}
