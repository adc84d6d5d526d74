//! `bosun keys`: the fleet's issuer, node and operator identities.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bosun_trust::identity::{self, CLAIMS_VERSION, Claims, Role};
use bosun_trust::keys::{self, KeyKind};
use bosun_trust::secret_file;
use clap::{Args, Subcommand};

use crate::Global;

/// Identities: who may tell a node what to do.
///
/// A fleet has an issuer key (kept by whoever runs the fleet, off the nodes if you
/// can). It issues each node (and each operator) an identity: a name, a public key
/// and grants, signed by the issuer. Every node trusts the issuer's public key
/// (`--trust KEY`, BOSUN_TRUSTED_ISSUERS) and checks every message against the
/// sender's identity and its own policy (`--policy`).
///
/// A fleet on one machine, as in the README's quick start:
///   export BOSUN_TRUSTED_ISSUERS=$(bosun keys init)
///   bosun keys issue --name central --into /tmp/bosun/central --allow '*'
///   bosun keys issue --name ship1 --into /tmp/bosun/ship1
///
/// A node on another host: start it once (it creates <data dir>/node.key and logs
/// its public key), then issue and copy the identity to <data dir>/node.id:
///   bosun keys issue --name ship7 --pub UAB… > node.id
///
/// An operator with a narrow grant, signing what they send:
///   bosun keys new --out ~/.config/bosun/alice.key
///   bosun keys issue --name alice --role operator --pub UCD… --allow 'cliCommand:uptime' \
///       > ~/.config/bosun/alice.id
#[derive(Subcommand)]
#[command(verbatim_doc_comment)]
pub enum KeysCmd {
    /// Create the fleet's issuer key (once) and print its public key.
    Init(IssuerDir),
    /// Issue an identity: a name, a role, a public key and grants, signed by the issuer.
    Issue(IssueCmd),
    /// Show the issuer's key, a node's key and identity, and the identities issued.
    Show(ShowCmd),
    /// Create a key pair for an operator (or a node not started yet); print its public key.
    New(NewCmd),
    /// Print a nats-server configuration: one nkey user per issued node, each allowed only
    /// its own subjects.
    NatsConfig(NatsConfigCmd),
}

/// Where the issuer key and the issued identities are kept.
#[derive(Args, Clone)]
pub struct IssuerDir {
    /// The issuer's folder: `issuer.key` and `issued/<name>.id`.
    /// [default: $XDG_CONFIG_HOME/bosun or ~/.config/bosun]
    #[arg(long, env = "BOSUN_ISSUER_DIR", value_name = "DIR")]
    issuer_dir: Option<PathBuf>,
}

impl IssuerDir {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.issuer_dir {
            return Ok(dir.clone());
        }
        if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(config).join("bosun"));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .context("no --issuer-dir, BOSUN_ISSUER_DIR, XDG_CONFIG_HOME or HOME")?;
        Ok(PathBuf::from(home).join(".config/bosun"))
    }

    fn key_path(&self) -> anyhow::Result<PathBuf> {
        Ok(self.path()?.join("issuer.key"))
    }

    fn issuer(&self) -> anyhow::Result<nkeys::KeyPair> {
        let path = self.key_path()?;
        if !path.exists() {
            bail!(
                "no issuer key at {}; create one with `bosun keys init` (or point --issuer-dir / BOSUN_ISSUER_DIR at it)",
                path.display()
            );
        }
        Ok(keys::load(&path, KeyKind::Issuer)?)
    }
}

/// Issue an identity.
#[derive(Args)]
pub struct IssueCmd {
    #[command(flatten)]
    issuer: IssuerDir,
    /// The holder's name: a node's name (as in `--name`), or an operator's.
    #[arg(long)]
    name: String,
    /// The holder's public key (U…): from its node's start-up log, `bosun keys show`, or
    /// `bosun keys new`.
    #[arg(long = "pub", value_name = "KEY", conflicts_with = "into")]
    public: Option<String>,
    /// Install the identity into this node data dir as node.id, creating the node's key
    /// there if the node has never started.
    #[arg(long, value_name = "DATA_DIR")]
    into: Option<PathBuf>,
    /// node (sends frames) or operator (signs messages it submits).
    #[arg(long, default_value = "node")]
    role: String,
    /// What the holder may ask other nodes to run: METHOD or METHOD:ARGS patterns with
    /// `*` and `?`, e.g. `*`, `ping`, `cliCommand:uptime`, 'cliCommand:ls *'. Repeat for
    /// more. Replies, hellos and error reports need no grant. [default: none]
    #[arg(long, value_name = "GRANT")]
    allow: Vec<String>,
    /// How long the identity is valid: e.g. 90d, 12h, 30m. [default: never expires]
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
}

/// Show keys and identities.
#[derive(Args)]
pub struct ShowCmd {
    #[command(flatten)]
    issuer: IssuerDir,
    /// Print only the issuer's public key.
    #[arg(long)]
    issuer_key: bool,
    /// Print JSON: `issuer`, `issued`, `nodeKey`, `identity` (each with its public key
    /// and file, or null when there is none) and `trusts`.
    #[arg(long)]
    json: bool,
}

/// Create a key pair.
#[derive(Args)]
pub struct NewCmd {
    /// Where to write the seed (0600; never replaced).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Print a nats-server configuration.
#[derive(Args)]
pub struct NatsConfigCmd {
    #[command(flatten)]
    issuer: IssuerDir,
    /// First token of every subject, as the nodes' `subject_prefix`.
    #[arg(long, default_value = "bosun")]
    prefix: String,
}

fn now_ms() -> u64 {
    bosun_methods::clock::now_millis()
}

/// Parse `90d`, `12h`, `30m`, `45s` into milliseconds.
fn duration_ms(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("--expires {text:?}: expected a number and a unit, e.g. 90d"))?;
    let unit = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => bail!("--expires {text:?}: the unit must be d, h, m or s, e.g. 90d"),
    };
    Ok(n.saturating_mul(unit))
}

impl KeysCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        match self {
            KeysCmd::Init(dir) => init(&dir),
            KeysCmd::Issue(cmd) => issue(cmd),
            KeysCmd::Show(cmd) => show(cmd, global),
            KeysCmd::New(cmd) => {
                let (pair, created) = keys::load_or_create(&cmd.out, KeyKind::Member)?;
                if !created {
                    eprintln!("{} exists already; its public key:", cmd.out.display());
                }
                outln!("{}", pair.public_key());
                Ok(0)
            }
            KeysCmd::NatsConfig(cmd) => {
                let users = issued(&cmd.issuer.path()?)?
                    .into_iter()
                    .filter(|c| c.role == Role::Node)
                    .map(|c| bosun_trust::nats::NatsUser {
                        name: c.name,
                        nkey: c.key,
                    })
                    .collect::<Vec<_>>();
                if users.is_empty() {
                    bail!("no node identities issued yet: bosun keys issue --name NODE …");
                }
                out!(
                    "{}",
                    bosun_trust::nats::try_server_config(&cmd.prefix, &users)?
                );
                Ok(0)
            }
        }
    }
}

fn init(dir: &IssuerDir) -> anyhow::Result<i32> {
    let path = dir.key_path()?;
    let (pair, created) = keys::load_or_create(&path, KeyKind::Issuer)?;
    if created {
        eprintln!(
            "created the issuer key {} (keep it safe; it vouches for every node).\n\
             Nodes trust it with --trust KEY or BOSUN_TRUSTED_ISSUERS=KEY; its public key:",
            path.display()
        );
    } else {
        eprintln!("the issuer key {} exists; its public key:", path.display());
    }
    outln!("{}", pair.public_key());
    Ok(0)
}

fn issue(cmd: IssueCmd) -> anyhow::Result<i32> {
    let issuer = cmd.issuer.issuer()?;
    let role: Role = cmd.role.parse()?;
    bosun_proto::validate_node_name(&cmd.name).with_context(|| format!("--name {:?}", cmd.name))?;
    for grant in &cmd.allow {
        identity::Grant::parse(grant)?;
    }
    let key = match (&cmd.public, &cmd.into) {
        (Some(key), _) => keys::public(key, KeyKind::Member)?.public_key(),
        (None, Some(dir)) => keys::load_or_create(&dir.join("node.key"), KeyKind::Member)?
            .0
            .public_key(),
        (None, None) => {
            bail!("say whose identity: --pub KEY, or --into DATA_DIR for a node on this host")
        }
    };
    let now = now_ms();
    let exp = cmd
        .expires
        .as_deref()
        .map(duration_ms)
        .transpose()?
        .map(|d| now.saturating_add(d));
    let claims = Claims {
        v: CLAIMS_VERSION,
        name: cmd.name.clone(),
        role,
        key,
        allow: cmd.allow.clone(),
        iss: issuer.public_key(),
        iat: now,
        exp,
    };
    let token = identity::issue(&issuer, &claims);
    let record = cmd
        .issuer
        .path()?
        .join("issued")
        .join(format!("{}.id", cmd.name));
    write_public(&record, &token)?;
    let grants = if cmd.allow.is_empty() {
        "no grants".to_string()
    } else {
        format!("grants {}", cmd.allow.join(", "))
    };
    match &cmd.into {
        Some(dir) => {
            let path = dir.join("node.id");
            write_public(&path, &token)?;
            eprintln!(
                "issued {} ({}, {grants}) → {}; restart the node to use it",
                cmd.name,
                role.name(),
                path.display()
            );
        }
        None => {
            eprintln!("issued {} ({}, {grants})", cmd.name, role.name());
            outln!("{token}");
        }
    }
    Ok(0)
}

/// Write an identity (not a secret, but nobody else's to change): 0600 via a temporary
/// file, replacing an older one.
fn write_public(path: &Path, token: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("id.new");
    let _ = std::fs::remove_file(&tmp);
    secret_file::write_secret(&tmp, token)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The identities issued from this issuer folder.
fn issued(dir: &Path) -> anyhow::Result<Vec<Claims>> {
    let folder = dir.join("issued");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", folder.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "id") {
            let text = std::fs::read_to_string(&path)?;
            match identity::read_claims(&text) {
                Ok(c) => out.push(c),
                Err(e) => eprintln!("skipping {}: {e}", path.display()),
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn describe(claims: &Claims) -> String {
    let exp = match claims.exp {
        Some(exp) => bosun_methods::clock::rfc3339_millis(exp),
        None => "never".into(),
    };
    let grants = if claims.allow.is_empty() {
        "-".to_string()
    } else {
        claims.allow.join(" ")
    };
    format!(
        "{:<16} {:<9} {}  expires {exp}  grants {grants}",
        claims.name,
        claims.role.name(),
        claims.key
    )
}

fn claims_json(claims: &Claims) -> serde_json::Value {
    serde_json::json!({
        "name": claims.name,
        "role": claims.role.name(),
        "key": claims.key,
        "expires": claims.exp.map(bosun_methods::clock::rfc3339_millis),
        "grants": claims.allow,
    })
}

fn show(cmd: ShowCmd, global: &Global) -> anyhow::Result<i32> {
    let dir = cmd.issuer.path()?;
    let issuer_path = dir.join("issuer.key");
    if cmd.issuer_key {
        outln!(
            "{}",
            keys::load(&issuer_path, KeyKind::Issuer)?.public_key()
        );
        return Ok(0);
    }
    let issuer = if issuer_path.exists() {
        Some((
            keys::load(&issuer_path, KeyKind::Issuer)?.public_key(),
            issued(&dir)?,
        ))
    } else {
        None
    };
    let config = super::load_config(global, &super::NodeArgs::default())?;
    let key_path = config.node_key_path();
    let node_key = if key_path.exists() {
        Some(keys::load(&key_path, KeyKind::Member)?.public_key())
    } else {
        None
    };
    let identity = match std::fs::read_to_string(config.identity_path()) {
        Ok(token) if node_key.is_some() => Some(identity::read_claims(&token)?),
        _ => None,
    };
    if cmd.json {
        let shown = serde_json::json!({
            "issuer": issuer.as_ref().map(|(key, _)| serde_json::json!({
                "key": key, "file": issuer_path.display().to_string()
            })),
            "issued": issuer.as_ref().map_or(Vec::new(), |(_, issued)| {
                issued.iter().map(claims_json).collect()
            }),
            "nodeKey": node_key.as_ref().map(|key| serde_json::json!({
                "key": key, "file": key_path.display().to_string()
            })),
            "identity": identity.as_ref().map(claims_json),
            "trusts": config.trusted_issuers,
        });
        outln!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(0);
    }
    match &issuer {
        Some((key, issued)) => {
            outln!("issuer   {key}  ({})", issuer_path.display());
            outln!("issued   {}", issued.len());
            for claims in issued {
                outln!("  {}", describe(claims));
            }
        }
        None => outln!(
            "issuer   none at {} (bosun keys init)",
            issuer_path.display()
        ),
    }
    match &node_key {
        Some(key) => {
            outln!("node key {key}  ({})", key_path.display());
            match &identity {
                Some(claims) => outln!("identity {}", describe(claims)),
                None => outln!(
                    "identity none at {} (bosun keys issue --name {} --into {})",
                    config.identity_path().display(),
                    config.name,
                    config.data_dir.display()
                ),
            }
        }
        None => outln!(
            "node key none at {} (created at the node's first start)",
            key_path.display()
        ),
    }
    if config.trusted_issuers.is_empty() {
        outln!("trusts   no issuer: messages from other nodes are refused");
    } else {
        outln!("trusts   {}", config.trusted_issuers.join(", "));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(duration_ms("90d").unwrap(), 90 * 86_400_000);
        assert_eq!(duration_ms("12h").unwrap(), 12 * 3_600_000);
        assert!(duration_ms("12").is_err());
        assert!(duration_ms("d").is_err());
        assert!(duration_ms("3w").is_err());
    }
}
