//! What an operator installs and reads besides the binary: the version with its git
//! revision, shell completions, man pages, and logs that hold no colour codes when they
//! go to a file.

use std::process::Command;

use crate::support::{DockerCleanup, bin, exec_no_wait, fleet, stderr, stdout, unique, wait_state};

/// The source the binary was built from, as `git describe` names it.
fn git_revision() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn version_names_the_release_and_the_git_revision() {
    let revision = git_revision();
    for args in [&["--version"][..], &["node", "--version"]] {
        let out = Command::new(bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let line = stdout(&out);
        let want = format!("{} (git ", env!("CARGO_PKG_VERSION"));
        assert!(line.starts_with("bosun"), "{args:?}: {line}");
        assert!(line.contains(&want), "{args:?}: {line}");
        assert!(
            line.contains(&revision),
            "{args:?}: {line} names {revision}"
        );
    }
}

#[test]
fn completions_load_in_bash_and_name_every_command() {
    let out = Command::new("bash")
        .args([
            "-c",
            r#"source <("$1" completions bash) && complete -p bosun"#,
            "bash",
        ])
        .arg(bin())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("bosun"), "{}", stdout(&out));
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for command in ["node", "exec", "container", "chaos", "workload", "keys"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("possible values: bash"),
        "an unknown shell lists the known ones: {}",
        stderr(&out)
    );
}

#[test]
fn man_pages_render_with_man() {
    let out = Command::new(bin()).arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH bosun 1"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bosun.1");
    std::fs::write(&file, &page).unwrap();
    let rendered = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(&file)
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    // Words as man set them, whatever the spacing of its justified lines.
    let text = stdout(&rendered)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        "NAME",
        "SYNOPSIS",
        "Command and control for fleets",
        "exec",
        "--data-dir",
    ] {
        assert!(text.contains(want), "the rendered page has {want}: {text}");
    }

    let pages = dir.path().join("man1");
    let out = Command::new(bin())
        .args(["man", "--dir", pages.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "bosun.1",
        "bosun-node.1",
        "bosun-exec.1",
        "bosun-container-run.1",
        "bosun-keys-issue.1",
    ] {
        let page =
            std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(page.contains(".TH"), "{name} is a man page");
    }
    let written = std::fs::read_dir(&pages).unwrap().count();
    assert!(
        stdout(&out).contains(&format!("wrote {written} man pages")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_node_logging_to_a_file_writes_no_colour_codes() {
    let Some(fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let out = fleet
        .node("central")
        .cli(&["exec", "-n", "ship1", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["central", "ship1"] {
        let log = std::fs::read_to_string(fleet.node(name).log_path()).unwrap();
        assert!(
            log.contains(" INFO "),
            "{name} logged at info, uncoloured: {log}"
        );
        assert!(
            !log.contains('\u{1b}'),
            "{name}'s log has escape codes: {log}"
        );
    }
}

#[test]
fn the_systemd_unit_is_valid_and_stops_the_node_first() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/bosun.service"),
    )
    .unwrap();
    for want in [
        "KillMode=mixed",
        "User=bosun",
        "StateDirectory=bosun",
        "ExecStart=/usr/bin/bosun node --data-dir /var/lib/bosun",
    ] {
        assert!(unit.contains(want), "the unit has {want}");
    }
    // `systemd-analyze verify` checks every option and that ExecStart can run: point it
    // at the binary under test. It answers 0 even for an unknown value, but says so.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bosun.service");
    std::fs::write(
        &file,
        unit.replace("/usr/bin/bosun", bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "systemd finds nothing to say");
}

/// A fleet of one node, `central`, for a node run in a container to join; `None` when
/// Docker or NATS is missing (a failure instead under `BOSUN_REQUIRE_*`).
fn central_for_docker() -> Option<bosun_testkit::Fleet> {
    bosun_testkit::docker_test_image()?;
    fleet().central("central").nodes(&["central"]).start()
}

/// The environment a node started outside the testkit needs to join a test fleet: the
/// fleet's issuer trusted, every method allowed, hellos to `central` every second.
fn fleet_member_env() -> Vec<String> {
    vec![
        format!(
            "BOSUN_TRUSTED_ISSUERS={}",
            bosun_testkit::trust::issuer().public_key()
        ),
        "BOSUN_POLICY=*".into(),
        "BOSUN_CENTRAL=central".into(),
        "BOSUN_HELLO_INTERVAL=1".into(),
    ]
}

/// Removes an image on drop.
struct ImageCleanup(String);

impl Drop for ImageCleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn the_container_image_runs_a_node_that_serves_commands_and_docker() {
    let Some(fleet) = central_for_docker() else {
        return;
    };
    // The image, built by the script operators use, from the binary under test.
    let tag = format!("{}:test", unique("bosun-image-"));
    let _image = ImageCleanup(tag.clone());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/image");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--bin", bin().to_str().unwrap(), "--tag", &tag])
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/image: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("built {tag}")),
        "{}",
        stdout(&out)
    );

    // A node from it, run as the README says: host network, Docker socket, data in a
    // host folder (here with an identity from the fleet's issuer).
    let data = fleet.dir().join("boxed");
    std::fs::create_dir_all(&data).unwrap();
    bosun_testkit::trust::issuer().issue_into(&data, "boxed", &["*".to_string()]);
    let name = unique("bosun-boxed-");
    let _container = DockerCleanup {
        names: vec![name.clone()],
        nodes: vec![],
    };
    let out = Command::new("docker")
        .args(["run", "-d", "--name", &name, "--network", "host"])
        .arg("-v")
        .arg(format!("{}:/var/lib/bosun", data.display()))
        .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .args(["-e", "BOSUN_LOG=info"])
        .args(fleet_member_env().iter().flat_map(|kv| ["-e", kv.as_str()]))
        .arg(&tag)
        .args(["node", "--name", "boxed", "--broker", &fleet.nats().url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker run: {}", stderr(&out));
    fleet.wait_listed(&["boxed".to_string()]);

    let central = fleet.node("central");
    let out = central.cli(&[
        "exec",
        "-n",
        "boxed",
        "--json",
        "--",
        "sh",
        "-c",
        "echo from the image; cat /etc/passwd",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = bosun_testkit::json(&out);
    assert_eq!(rows[0]["state"], "done", "{rows}");
    assert_eq!(
        rows[0]["result"]["stdout"], "from the image\nroot:x:0:0:root:/root:/bin/sh\n",
        "it ran inside the image, whose only user is root"
    );
    // Killed (SIGKILL to the container) and started again, it keeps its data folder: a
    // command sent while it was down runs once it is back.
    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
    };
    docker(&["kill", &name]);
    let id = exec_no_wait(central, "boxed", &["sh", "-c", "echo after the restart"]);
    docker(&["start", &name]);
    let report = wait_state(central, &id, "done");
    assert_eq!(
        report["sent"]["outcome"]["stdout"], "after the restart\n",
        "{report}"
    );
    // Through the mounted socket it reaches the host's Docker: it sees its own image.
    let out = central.cli(&["image", "ls", "-n", "boxed", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&tag),
        "the node in the container lists the host's images: {}",
        stdout(&out)
    );
}

/// A clean Debian (bookworm, minbase) as a local image, made once from a debootstrap
/// rootfs (no registry is reachable) and kept for later runs.
fn debian_image() -> String {
    let tag = "bosun-debian-bookworm:minbase".to_string();
    let have = Command::new("docker")
        .args(["image", "inspect", &tag])
        .output()
        .unwrap();
    if have.status.success() {
        return tag;
    }
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(root.path())
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap (apt-get install debootstrap)");
    assert!(out.status.success(), "debootstrap: {}", stderr(&out));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c . | docker import - {tag}",
            root.path().display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "docker import: {}", stderr(&out));
    tag
}

#[test]
fn the_deb_installs_serves_as_its_own_user_and_purges_clean_in_a_clean_debian() {
    let Some(fleet) = central_for_docker() else {
        return;
    };
    // The package, made by the script operators use, from the binary under test.
    let target = bin().parent().unwrap().parent().unwrap().to_path_buf();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/deb");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--dev", "--no-build"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/deb: {}", stderr(&out));
    let deb = std::path::PathBuf::from(stdout(&out).trim());
    assert!(deb.extension().is_some_and(|e| e == "deb"), "{deb:?}");

    let name = unique("bosun-deb-");
    let _container = DockerCleanup {
        names: vec![name.clone()],
        nodes: vec![],
    };
    let out = Command::new("docker")
        .args(["run", "-d", "--name", &name, "--network", "host", "-v"])
        .arg(format!("{}:/deb:ro", deb.parent().unwrap().display()))
        .args([&debian_image(), "sleep", "infinity"])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker run: {}", stderr(&out));
    let sh = |script: &str| -> std::process::Output {
        Command::new("docker")
            .args(["exec", &name, "sh", "-c", script])
            .output()
            .unwrap()
    };
    let ok = |script: &str| -> String {
        let out = sh(script);
        assert!(out.status.success(), "{script}: {}", stderr(&out));
        stdout(&out)
    };
    let file = deb.file_name().unwrap().to_str().unwrap();
    ok(&format!("dpkg -i /deb/{file}"));
    assert!(ok("getent passwd bosun").contains(":/var/lib/bosun:/usr/sbin/nologin"));
    assert_eq!(ok("stat -c %U:%a /var/lib/bosun"), "bosun:700\n");
    assert!(ok("bosun --version").contains("(git "));
    ok("test -f /usr/lib/systemd/system/bosun.service");
    ok("test -f /usr/share/bash-completion/completions/bosun");
    ok("test -f /usr/share/man/man1/bosun-exec.1.gz");

    // Started as the package's user with an identity from the fleet's issuer, it joins
    // central and runs what central sends, as that user.
    let identity = tempfile::tempdir().unwrap();
    bosun_testkit::trust::issuer().issue_into(identity.path(), "debnode", &["*".to_string()]);
    let out = Command::new("docker")
        .arg("cp")
        .arg(format!("{}/.", identity.path().display()))
        .arg(format!("{name}:/var/lib/bosun/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "docker cp: {}", stderr(&out));
    ok("chown -R bosun:bosun /var/lib/bosun");
    let out = Command::new("docker")
        .args(["exec", "-d", "-u", "bosun", &name, "env"])
        .args(fleet_member_env())
        .args([
            "bosun",
            "node",
            "--data-dir",
            "/var/lib/bosun",
            "--name",
            "debnode",
        ])
        .args(["--broker", &fleet.nats().url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "start the node: {}", stderr(&out));
    fleet.wait_listed(&["debnode".to_string()]);
    let out = fleet
        .node("central")
        .cli(&["exec", "-n", "debnode", "--json", "--", "id", "-un"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = bosun_testkit::json(&out);
    assert_eq!(rows[0]["result"]["stdout"], "bosun\n", "{rows}");

    // Stopped and purged, nothing of it is left: binary, data, user.
    ok("for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = bosun ] && kill ${p#/proc/}; done; true");
    bosun_testkit::eventually(
        std::time::Duration::from_secs(20),
        "the node stops on SIGTERM",
        || {
            let left = ok("for p in /proc/[0-9]*; do cat $p/comm; done 2>/dev/null");
            (!left.lines().any(|comm| comm == "bosun")).then_some(())
        },
    );
    ok("dpkg --purge bosun");
    for gone in [
        "getent passwd bosun",
        "getent group bosun",
        "test -e /var/lib/bosun",
        "test -e /usr/bin/bosun",
        "test -e /usr/lib/systemd/system/bosun.service",
    ] {
        assert!(
            !sh(gone).status.success(),
            "after the purge: {gone} still holds"
        );
    }
}

#[test]
fn every_option_and_argument_of_every_command_has_help() {
    // Every command, found by walking the "Commands:" lists of the help pages.
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    let mut bare = Vec::new();
    while let Some(command) = todo.pop() {
        seen += 1;
        let out = Command::new(bin())
            .args(&command)
            .arg("-h")
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
        let mut in_commands = false;
        for line in stdout(&out).lines() {
            let item = line.trim_end();
            if item.ends_with(':') && !item.starts_with(' ') {
                in_commands = item == "Commands:";
                continue;
            }
            // A command's name is indented by two; its help's next lines by more.
            let named = in_commands && item.starts_with("  ") && !item.starts_with("   ");
            let name = item.split_whitespace().next().unwrap_or("");
            if named && name != "help" {
                let mut sub = command.clone();
                sub.push(name.to_string());
                todo.push(sub);
            }
            let listed = item.starts_with("  ")
                && matches!(item.trim_start().chars().next(), Some('-' | '<' | '['));
            // A listed command, option or argument is its name, two spaces or more, its
            // help.
            if (listed || named) && !item.trim_start().contains("  ") {
                bare.push(format!("bosun {}: {}", command.join(" "), item.trim()));
            }
        }
    }
    assert!(seen > 30, "walked only {seen} commands");
    assert!(bare.is_empty(), "without help: {bare:#?}");
}
