use super::*;
use std::io::Read;
use std::os::unix::fs::symlink;

/// A root with a file in it, and a folder outside it with a secret; both removed at the
/// end.
struct Fixture {
    root: PathBuf,
    outside: PathBuf,
    confine: Confinement,
}

impl Fixture {
    fn new() -> Fixture {
        let base = std::env::temp_dir().join(format!("bosun-confine-{}", bosun_proto::new_id()));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("inside.txt"), "inside").unwrap();
        std::fs::write(outside.join("secret"), "secret").unwrap();
        Fixture {
            confine: Confinement {
                file_roots: vec![root.clone()],
                ..Confinement::default()
            },
            root,
            outside,
        }
    }

    fn at(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(base) = self.root.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

fn text(opened: OpenedFile) -> String {
    let mut text = String::new();
    let mut file = opened.file;
    file.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_file_inside_a_root_is_read_by_absolute_and_relative_path() {
    let f = Fixture::new();
    let opened = f.confine.open_read(&f.at("inside.txt")).unwrap();
    assert_eq!(
        opened.real,
        f.root.canonicalize().unwrap().join("inside.txt")
    );
    assert_eq!(text(opened), "inside");
    // Relative: against the first root.
    assert_eq!(text(f.confine.open_read("inside.txt").unwrap()), "inside");
    assert_eq!(text(f.confine.open_read("./inside.txt").unwrap()), "inside");
}

#[test]
fn an_absolute_path_outside_every_root_is_refused_with_the_roots_and_the_setting() {
    let f = Fixture::new();
    let secret = f.outside.join("secret");
    let e = f
        .confine
        .open_read(&secret.display().to_string())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "path {} is outside this node's file roots ({}); see file_roots",
            secret.display(),
            f.root.display()
        )
    );
    let e = f.confine.open_read("/etc/hostname").unwrap_err();
    assert!(matches!(e, ConfineError::Outside { .. }), "{e}");
}

#[test]
fn dot_dot_is_refused_even_when_it_would_stay_inside() {
    let f = Fixture::new();
    for given in [
        "../outside/secret".to_string(),
        f.at("../outside/secret"),
        f.at("sub/../inside.txt"),
    ] {
        let e = f.confine.open_read(&given).unwrap_err();
        assert!(
            matches!(e, ConfineError::ParentComponent { .. }),
            "{given}: {e}"
        );
        assert!(e.to_string().contains("see file_roots"), "{e}");
        let e = f.confine.open_destination(&given).unwrap_err();
        assert!(
            matches!(e, ConfineError::ParentComponent { .. }),
            "{given}: {e}"
        );
    }
}

#[test]
fn a_symlink_leading_out_is_refused_and_one_staying_in_is_followed() {
    let f = Fixture::new();
    symlink(f.outside.join("secret"), f.root.join("link-out")).unwrap();
    symlink(&f.outside, f.root.join("dir-out")).unwrap();
    symlink(f.root.join("inside.txt"), f.root.join("link-in")).unwrap();
    for given in [f.at("link-out"), f.at("dir-out/secret")] {
        let e = f.confine.open_read(&given).unwrap_err();
        let ConfineError::ResolvesOutside { real, .. } = &e else {
            panic!("{given}: {e}");
        };
        assert_eq!(real, &f.outside.canonicalize().unwrap().join("secret"));
        assert!(e.to_string().contains("resolves to"), "{e}");
    }
    assert_eq!(
        text(f.confine.open_read(&f.at("link-in")).unwrap()),
        "inside"
    );
}

#[test]
fn a_root_reached_through_a_symlink_holds_the_files_under_its_target() {
    let f = Fixture::new();
    let alias = f.root.parent().unwrap().join("alias");
    symlink(&f.root, &alias).unwrap();
    let confine = Confinement {
        file_roots: vec![alias.clone()],
        ..Confinement::default()
    };
    let via_alias = alias.join("inside.txt").display().to_string();
    assert_eq!(text(confine.open_read(&via_alias).unwrap()), "inside");
    assert_eq!(
        text(confine.open_read(&f.at("inside.txt")).unwrap()),
        "inside"
    );
}

#[test]
fn folders_pipes_and_missing_files_are_refused_with_the_reason() {
    let f = Fixture::new();
    std::fs::create_dir(f.root.join("folder")).unwrap();
    let e = f.confine.open_read(&f.at("folder")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("is a directory; give the path of a file"),
        "{e}"
    );
    let fifo = f.root.join("pipe");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    // Opening a pipe with no writer would hang without O_NONBLOCK.
    let e = f.confine.open_read(&f.at("pipe")).unwrap_err();
    assert!(matches!(e, ConfineError::NotRegular { .. }), "{e}");
    let e = f.confine.open_read(&f.at("missing")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot open {:?}: No such file or directory",
            f.at("missing")
        )
    );
}

#[test]
fn without_a_root_that_exists_nothing_is_opened() {
    let f = Fixture::new();
    let none = Confinement::default();
    let e = none.open_read(&f.at("inside.txt")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "this node has no file root that exists (file_roots: none); create one or set file_roots"
    );
    let gone = Confinement {
        file_roots: vec![f.root.join("not-there")],
        ..Confinement::default()
    };
    let e = gone.open_destination(&f.at("not-there/x")).unwrap_err();
    assert!(matches!(e, ConfineError::NoRoots { .. }), "{e}");
    assert!(!f.root.join("not-there").exists(), "no root is made");
}

#[test]
fn a_destination_gets_its_missing_folders_inside_the_root() {
    let f = Fixture::new();
    let d = f.confine.open_destination(&f.at("a/b/c/file.bin")).unwrap();
    let real_root = f.root.canonicalize().unwrap();
    assert_eq!(d.path(), real_root.join("a/b/c/file.bin"));
    assert!(f.root.join("a/b/c").is_dir());
    let mut file = d.open(d.name(), OFlag::O_WRONLY | OFlag::O_CREAT).unwrap();
    std::io::Write::write_all(&mut file, b"x").unwrap();
    assert_eq!(std::fs::read(f.root.join("a/b/c/file.bin")).unwrap(), b"x");
    // Relative: against the first root.
    let d = f.confine.open_destination("rel/file").unwrap();
    assert_eq!(d.path(), real_root.join("rel/file"));
}

#[test]
fn a_destination_outside_or_behind_a_symlink_out_is_refused_and_nothing_is_made() {
    let f = Fixture::new();
    let target = f.outside.join("new/file");
    let e = f
        .confine
        .open_destination(&target.display().to_string())
        .unwrap_err();
    assert!(matches!(e, ConfineError::Outside { .. }), "{e}");
    assert!(!f.outside.join("new").exists(), "no folder made outside");

    symlink(&f.outside, f.root.join("out")).unwrap();
    for given in [f.at("out/file"), f.at("out/deeper/file")] {
        let e = f.confine.open_destination(&given).unwrap_err();
        assert!(
            matches!(e, ConfineError::ResolvesOutside { .. }),
            "{given}: {e}"
        );
    }
    assert!(!f.outside.join("deeper").exists(), "no folder made outside");
    assert!(!f.outside.join("file").exists());
}

#[test]
fn a_dangling_symlink_on_the_way_is_not_followed_to_make_a_folder() {
    let f = Fixture::new();
    // `canonicalize` cannot resolve it, so it looks like a folder still to make.
    symlink(f.outside.join("later"), f.root.join("dangling")).unwrap();
    let e = f
        .confine
        .open_destination(&f.at("dangling/file"))
        .unwrap_err();
    assert!(matches!(e, ConfineError::Io { .. }), "{e}");
    assert!(!f.outside.join("later").exists(), "no folder made outside");
}

#[test]
fn destination_names_are_never_followed() {
    let f = Fixture::new();
    let d = f.confine.open_destination(&f.at("file")).unwrap();
    symlink(f.outside.join("secret"), f.root.join("file")).unwrap();
    let e = d
        .open(d.name(), OFlag::O_WRONLY | OFlag::O_TRUNC)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(Errno::ELOOP as i32), "{e}");
    assert!(d.exists(d.name()));
    assert!(!d.is_file(d.name()), "a symlink is not a file here");
    d.remove(d.name()).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.outside.join("secret")).unwrap(),
        "secret"
    );
    assert!(!d.exists(d.name()));
    d.remove(d.name()).unwrap();
}

#[test]
fn addresses_are_refused_by_range_unless_allowed() {
    let policy = Confinement::default();
    let refused = |text: &str| {
        let address: IpAddr = text.parse().unwrap();
        policy.check_address(address).unwrap_err().kind
    };
    for (address, kind) in [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("100.127.255.255", "shared address space (CGNAT)"),
        ("0.0.0.0", "unspecified (this network)"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique local (private)"),
        ("fd12:3456::1", "unique local (private)"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
    ] {
        assert_eq!(refused(address), kind, "{address}");
    }
    for public in [
        "1.1.1.1",
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1111",
        "::ffff:1.1.1.1",
    ] {
        assert_eq!(
            policy.check_address(public.parse().unwrap()),
            Ok(()),
            "{public}"
        );
    }
    let refusal = policy
        .check_address("169.254.169.254".parse().unwrap())
        .unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "169.254.169.254 is link-local (169.254.0.0/16)"
    );

    let allowing = Confinement {
        http_allow: parse_allow(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap(),
        ..Confinement::default()
    };
    for allowed in [
        "10.9.8.7",
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ] {
        assert_eq!(
            allowing.check_address(allowed.parse().unwrap()),
            Ok(()),
            "{allowed}"
        );
    }
    for still in ["127.0.0.2", "192.168.0.1", "::1"] {
        assert!(
            allowing.check_address(still.parse().unwrap()).is_err(),
            "{still}"
        );
    }
}

#[test]
fn allow_lists_take_cidrs_and_addresses_and_refuse_the_rest() {
    let parsed = parse_allow(&[
        " 10.0.0.0/8 ".into(),
        "10.1.2.3/8".into(),
        "::1".into(),
        "fd00::/8".into(),
    ])
    .unwrap();
    let shown: Vec<String> = parsed.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.0/8", "10.0.0.0/8", "::1/128", "fd00::/8"]);
    for bad in ["10.0.0.0/33", "localhost", "", "10.0.0/8"] {
        let e = parse_allow(&[bad.to_string()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{bad:?} is not an address range; give a CIDR such as 10.0.0.0/8 or 127.0.0.1/32"
            )
        );
    }
}
