//! Where the file and network methods may reach: file roots for `copySrc`, `copyDst`
//! and `tailFile`, refused address ranges for `httpGet`.
//!
//! # Files
//! A path from a message is made absolute (a relative one is taken against the first
//! root), and a path with a `..` component is refused outright. The roots themselves are
//! resolved (symlinks followed) at every check, so a root created or moved after the
//! node started counts as it is now.
//!
//! *Reading* ([`Confinement::open_read`]): the path is resolved and checked first, so a
//! file outside the roots is never even opened (opening a device can have effects).
//! Then it is opened, and the path the kernel gives for the open descriptor
//! (`/proc/self/fd/N`) is checked again: a symlink swapped in between the check and the
//! open is caught, because what is read is the file that was checked.
//!
//! *Writing* ([`Confinement::open_destination`]): the destination's folder is opened,
//! starting from its deepest existing ancestor (checked by its real path, then by its
//! descriptor's path), and the missing folders are made one at a time with `mkdirat` and
//! opened with `O_NOFOLLOW`, so no symlink is followed on the way. The folder's
//! descriptor is checked once more, and every file operation after that is relative to
//! it on a single name with `O_NOFOLLOW` ([`Destination`]): a symlink placed at the name
//! later is refused (`ELOOP`) or, for a rename, replaced, never followed.
//!
//! # Network
//! `httpGet` refuses loopback, link-local, private (RFC 1918, RFC 4193), shared (CGNAT,
//! 100.64/10), unspecified, multicast and broadcast addresses, an IPv4-mapped IPv6
//! address by the IPv4 address it holds, unless a range of `http_allow` holds the
//! address ([`Confinement::check_address`]). `http_get` applies it to every address a
//! name resolves to, to literal addresses in URLs, and to every redirect.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// `copy_max_bytes` when the node sets none: 1 GiB.
pub const DEFAULT_COPY_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// What the file and network methods may reach on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct Confinement {
    /// Folders `copySrc`, `copyDst` and `tailFile` may use (`file_roots`), as configured;
    /// a relative path in a message is taken against the first.
    pub file_roots: Vec<PathBuf>,
    /// Largest file `copySrc` sends, in bytes (`copy_max_bytes`).
    pub copy_max_bytes: u64,
    /// Ranges `httpGet` may reach although they are refused by default (`http_allow`).
    pub http_allow: Vec<IpNet>,
}

impl Default for Confinement {
    /// No roots (every file method is refused), the default copy limit, nothing allowed
    /// beyond the public internet.
    fn default() -> Self {
        Confinement {
            file_roots: Vec::new(),
            copy_max_bytes: DEFAULT_COPY_MAX_BYTES,
            http_allow: Vec::new(),
        }
    }
}

/// Why a path was not opened. The texts name the roots and the setting to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The path has a `..` component.
    #[error(
        "path {path:?} contains `..`; give a path without `..` inside this node's file roots ({roots}); see file_roots"
    )]
    ParentComponent {
        /// The path as given.
        path: String,
        /// The configured roots, comma-separated.
        roots: String,
    },
    /// The path lies outside every root.
    #[error("path {} is outside this node's file roots ({roots}); see file_roots", path.display())]
    Outside {
        /// The path, made absolute.
        path: PathBuf,
        /// The configured roots, comma-separated.
        roots: String,
    },
    /// The path leads, through a symlink, outside every root.
    #[error(
        "path {} resolves to {}, outside this node's file roots ({roots}); see file_roots",
        path.display(),
        real.display()
    )]
    ResolvesOutside {
        /// The path, made absolute.
        path: PathBuf,
        /// Where it leads.
        real: PathBuf,
        /// The configured roots, comma-separated.
        roots: String,
    },
    /// No root exists, or none is configured.
    #[error(
        "this node has no file root that exists (file_roots: {roots}); create one or set file_roots"
    )]
    NoRoots {
        /// The configured roots, comma-separated, or `none`.
        roots: String,
    },
    /// The file could not be opened.
    #[error("cannot open {path:?}: {}", os_words(source))]
    Open {
        /// The path as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The path names a folder.
    #[error("{path:?} is a directory; give the path of a file")]
    Directory {
        /// The path as given.
        path: String,
    },
    /// The path names a device, a pipe or a socket.
    #[error("{path:?} is not a regular file; file methods use only regular files")]
    NotRegular {
        /// The path as given.
        path: String,
    },
    /// Another file operation failed; `action` says which, with its path.
    #[error("cannot {action}: {}", os_words(source))]
    Io {
        /// What was tried.
        action: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A file opened for reading inside the roots.
#[derive(Debug)]
pub struct OpenedFile {
    /// The open file.
    pub file: File,
    /// Its real path, as the kernel gives it for the descriptor.
    pub real: PathBuf,
}

/// A destination's folder, opened and checked, and the file's name in it. File
/// operations go through its methods: relative to the folder's descriptor, on one name,
/// never following a symlink.
#[derive(Debug)]
pub struct Destination {
    dir: OwnedFd,
    folder: PathBuf,
    name: OsString,
}

impl Confinement {
    /// Open `given` for reading, if it is a regular file inside the roots.
    /// Blocking: call it off the async workers.
    pub fn open_read(&self, given: &str) -> Result<OpenedFile, ConfineError> {
        let path = self.absolute(given)?;
        let roots = self.real_roots()?;
        let open_error = |source| ConfineError::Open {
            path: given.to_string(),
            source,
        };
        let real = std::fs::canonicalize(&path).map_err(open_error)?;
        self.inside(&path, &real, &roots)?;
        // Non-blocking, so a pipe does not hang the open; no controlling terminal from a
        // tty. Both mean nothing for the regular file required below.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
            .open(&real)
            .map_err(open_error)?;
        let opened = fd_path(&file, &path)?;
        self.inside(&path, &opened, &roots)?;
        let meta = file.metadata().map_err(open_error)?;
        if meta.is_dir() {
            return Err(ConfineError::Directory {
                path: given.to_string(),
            });
        }
        if !meta.is_file() {
            return Err(ConfineError::NotRegular {
                path: given.to_string(),
            });
        }
        Ok(OpenedFile { file, real: opened })
    }

    /// Open the folder a file at `given` goes in, making the missing folders, if it is
    /// inside the roots. Blocking: call it off the async workers.
    pub fn open_destination(&self, given: &str) -> Result<Destination, ConfineError> {
        let path = self.absolute(given)?;
        let Some(name) = path.file_name().map(OsStr::to_os_string) else {
            return Err(ConfineError::Outside {
                path,
                roots: self.roots_text(),
            });
        };
        let parent = path.parent().unwrap_or(Path::new("/"));
        let roots = self.real_roots()?;
        // The deepest existing ancestor, and the folders to make below it.
        let mut existing = parent.to_path_buf();
        let mut missing: Vec<OsString> = Vec::new();
        let real = loop {
            match std::fs::canonicalize(&existing) {
                Ok(real) => break real,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match existing.file_name() {
                        Some(last) => missing.push(last.to_os_string()),
                        None => {
                            return Err(ConfineError::Io {
                                action: format!("find a folder of {}", path.display()),
                                source: e,
                            });
                        }
                    }
                    existing.pop();
                }
                Err(source) => {
                    return Err(ConfineError::Io {
                        action: format!("look up {}", existing.display()),
                        source,
                    });
                }
            }
        };
        self.inside(&path, &real, &roots)?;
        let io = |action: String| {
            move |errno: Errno| ConfineError::Io {
                action,
                source: errno.into(),
            }
        };
        let mut dir = nix::fcntl::open(
            &real,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io(format!("open the folder {}", real.display())))?;
        self.inside(&path, &fd_path(&dir, &path)?, &roots)?;
        let mut made = real;
        for folder in missing.iter().rev() {
            made.push(folder);
            match mkdirat(&dir, folder.as_os_str(), Mode::from_bits_truncate(0o777)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io(format!("create the folder {}", made.display()))(e)),
            }
            dir = openat(
                &dir,
                folder.as_os_str(),
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(io(format!("open the folder {}", made.display())))?;
        }
        let folder = fd_path(&dir, &path)?;
        self.inside(&path, &folder, &roots)?;
        Ok(Destination { dir, folder, name })
    }

    /// Whether `httpGet` may connect to `address`.
    pub fn check_address(&self, address: IpAddr) -> Result<(), RefusedAddress> {
        // An IPv4-mapped IPv6 address reaches the IPv4 address it holds.
        let reached = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            IpAddr::V4(_) => address,
        };
        if self
            .http_allow
            .iter()
            .any(|range| range.contains(&address) || range.contains(&reached))
        {
            return Ok(());
        }
        match REFUSED.iter().find(|(range, _)| range.contains(&reached)) {
            Some((range, kind)) => Err(RefusedAddress {
                address,
                kind,
                range: *range,
            }),
            None => Ok(()),
        }
    }

    /// `given` as an absolute path: relative ones go under the first root. A path with
    /// `..` is refused.
    pub(crate) fn absolute(&self, given: &str) -> Result<PathBuf, ConfineError> {
        let path = Path::new(given);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(ConfineError::ParentComponent {
                path: given.to_string(),
                roots: self.roots_text(),
            });
        }
        // Collecting the components drops `.` and doubled slashes.
        let path: PathBuf = path.components().collect();
        if path.is_absolute() {
            return Ok(path);
        }
        match self.file_roots.first() {
            Some(first) => Ok(first.join(path)),
            None => Err(ConfineError::NoRoots {
                roots: self.roots_text(),
            }),
        }
    }

    /// The roots that exist, symlinks resolved.
    fn real_roots(&self) -> Result<Vec<PathBuf>, ConfineError> {
        let real: Vec<PathBuf> = self
            .file_roots
            .iter()
            .filter_map(|root| std::fs::canonicalize(root).ok())
            .collect();
        if real.is_empty() {
            return Err(ConfineError::NoRoots {
                roots: self.roots_text(),
            });
        }
        Ok(real)
    }

    /// Refuse `real` (where `path` leads) unless a root holds it.
    fn inside(&self, path: &Path, real: &Path, roots: &[PathBuf]) -> Result<(), ConfineError> {
        if roots.iter().any(|root| real.starts_with(root)) {
            return Ok(());
        }
        let roots = self.roots_text();
        if real == path || path.starts_with(real) {
            Err(ConfineError::Outside {
                path: path.to_path_buf(),
                roots,
            })
        } else {
            Err(ConfineError::ResolvesOutside {
                path: path.to_path_buf(),
                real: real.to_path_buf(),
                roots,
            })
        }
    }

    /// The configured roots for messages: `a, b`, or `none`.
    fn roots_text(&self) -> String {
        if self.file_roots.is_empty() {
            return "none".to_string();
        }
        self.file_roots
            .iter()
            .map(|root| root.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// === impl Destination ===

impl Destination {
    /// The file's real path.
    pub fn path(&self) -> PathBuf {
        self.folder.join(&self.name)
    }

    /// The real path of `name` in the folder.
    pub fn path_of(&self, name: &OsStr) -> PathBuf {
        self.folder.join(name)
    }

    /// The file's name in the folder.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The file's name with `suffix` appended: a sibling such as `x.bosun-part`.
    pub fn sibling(&self, suffix: &str) -> OsString {
        let mut name = self.name.clone();
        name.push(suffix);
        name
    }

    /// Open `name` in the folder with `flags` (plus `O_NOFOLLOW` and `O_CLOEXEC`);
    /// a created file gets mode 0666 less the umask, as `File::create` gives.
    pub fn open(&self, name: &OsStr, flags: OFlag) -> std::io::Result<File> {
        let fd = openat(
            &self.dir,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )?;
        Ok(File::from(fd))
    }

    /// True when `name` exists in the folder (a symlink counts as existing).
    pub fn exists(&self, name: &OsStr) -> bool {
        fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// True when `name` is a regular file in the folder.
    pub fn is_file(&self, name: &OsStr) -> bool {
        fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
    }

    /// Rename `from` to `to`, both in the folder; a symlink at `to` is replaced.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> std::io::Result<()> {
        renameat(&self.dir, from, &self.dir, to)?;
        Ok(())
    }

    /// Remove `name` from the folder; a name already gone is fine.
    pub fn remove(&self, name: &OsStr) -> std::io::Result<()> {
        match unlinkat(&self.dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Make renames in the folder durable. Best effort: some filesystems refuse to
    /// sync a folder, and the files themselves are synced.
    pub fn sync(&self) {
        let _ = nix::unistd::fsync(&self.dir);
    }
}

/// The path the kernel gives for an open descriptor. `path` names it in an error.
fn fd_path(fd: &impl AsFd, path: &Path) -> Result<PathBuf, ConfineError> {
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    nix::fcntl::readlink(link.as_str())
        .map(PathBuf::from)
        .map_err(|errno| ConfineError::Io {
            action: format!(
                "check where {} leads (through {link}; is /proc mounted?)",
                path.display()
            ),
            source: errno.into(),
        })
}

/// The OS's words for an IO error, without Rust's "(os error N)" suffix.
pub(crate) fn os_words(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

// === network ===

/// An address `httpGet` does not connect to, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is {kind} ({range})")]
pub struct RefusedAddress {
    /// The address.
    pub address: IpAddr,
    /// What kind of address it is, e.g. `loopback`.
    pub kind: &'static str,
    /// The refused range that holds it.
    pub range: IpNet,
}

/// A request `httpGet` refused before connecting: what was asked for and each address
/// that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{target} is refused: {}; httpGet reaches such addresses only when http_allow lists them",
    list(.addresses)
)]
pub struct Refused {
    /// What was refused, e.g. `http://127.0.0.1/` or `localhost (every address it has)`.
    pub target: String,
    /// Why, address by address.
    pub addresses: Vec<RefusedAddress>,
}

fn list(addresses: &[RefusedAddress]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An `http_allow` item that is not an address range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not an address range; give a CIDR such as 10.0.0.0/8 or 127.0.0.1/32")]
pub struct NotARange {
    /// What was given.
    pub given: String,
}

/// Parse `http_allow`: CIDRs, or single addresses (taken as /32 or /128).
pub fn parse_allow(items: &[String]) -> Result<Vec<IpNet>, NotARange> {
    items
        .iter()
        .map(|item| {
            let text = item.trim();
            text.parse::<IpNet>()
                .map(|range| range.trunc())
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| NotARange {
                    given: item.clone(),
                })
        })
        .collect()
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix))
}

const fn v6(address: Ipv6Addr, prefix: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new_assert(address, prefix))
}

/// Ranges `httpGet` refuses unless `http_allow` holds the address.
const REFUSED: &[(IpNet, &str)] = &[
    (v4(0, 0, 0, 0, 8), "unspecified (this network)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(100, 64, 0, 0, 10), "shared address space (CGNAT)"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v6(Ipv6Addr::UNSPECIFIED, 128), "unspecified"),
    (v6(Ipv6Addr::LOCALHOST, 128), "loopback"),
    (
        v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        "link-local",
    ),
    (
        v6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
        "unique local (private)",
    ),
    (
        v6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
        "multicast",
    ),
];

#[cfg(test)]
mod tests;
