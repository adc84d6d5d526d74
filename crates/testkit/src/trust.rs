//! Identities for test fleets. Nodes on a broker refuse each other until an issuer
//! vouches for them, so every node the testkit starts on a broker gets, by default, an
//! identity with every grant from one issuer shared by the test process, trusts that
//! issuer, and lets every signer run anything (`policy = *`). Tests of trust itself
//! choose otherwise through [`NodeTrust`].

use std::path::Path;
use std::sync::OnceLock;

use bosun_trust::identity::{self, CLAIMS_VERSION, Claims, Role};
use bosun_trust::keys::{self, KeyKind};

/// How a test node is set up to trust and be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeTrust {
    /// An identity from the shared test issuer with these grants, trusting that issuer,
    /// with these local policy rules.
    Issued {
        /// The identity's grants.
        grants: Vec<String>,
        /// The node's `policy` rules.
        policy: Vec<String>,
    },
    /// Nothing configured: the node trusts no issuer and has no identity.
    Untrusted,
}

impl Default for NodeTrust {
    fn default() -> NodeTrust {
        NodeTrust::Issued {
            grants: vec!["*".into()],
            policy: vec!["*".into()],
        }
    }
}

/// The issuer every test node of this process trusts.
pub struct TestIssuer {
    pair: nkeys::KeyPair,
}

/// Environment variable through which a process shares its test issuer with the
/// processes it starts that issue identities too (see [`TestIssuer::seed`]).
pub const ISSUER_SEED_ENV: &str = "BOSUN_TEST_ISSUER_SEED";

/// The issuer shared by the whole test process (its key lives in memory only), or the
/// one whose seed is in [`ISSUER_SEED_ENV`].
pub fn issuer() -> &'static TestIssuer {
    static ISSUER: OnceLock<TestIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let shared = std::env::var(ISSUER_SEED_ENV)
            .ok()
            .and_then(|seed| nkeys::KeyPair::from_seed(&seed).ok());
        TestIssuer {
            pair: shared.unwrap_or_else(|| KeyKind::Issuer.generate()),
        }
    })
}

impl TestIssuer {
    /// The issuer's seed, for a helper process to issue as the same issuer (through
    /// [`ISSUER_SEED_ENV`]).
    pub fn seed(&self) -> String {
        self.pair.seed().expect("a generated key has its seed")
    }

    /// The issuer's public key (`O…`), for `trusted_issuers`.
    pub fn public_key(&self) -> String {
        self.pair.public_key()
    }

    /// An identity token for `key` (a `U…` public key).
    pub fn issue(
        &self,
        name: &str,
        key: &str,
        role: Role,
        grants: &[&str],
        exp: Option<u64>,
    ) -> String {
        identity::issue(
            &self.pair,
            &Claims {
                v: CLAIMS_VERSION,
                name: name.to_string(),
                role,
                key: key.to_string(),
                allow: grants.iter().map(|g| g.to_string()).collect(),
                iss: self.pair.public_key(),
                iat: 0,
                exp,
            },
        )
    }

    /// Give the node whose data dir is `data_dir` an identity (creating its key there if
    /// it has none yet), written to `<data_dir>/node.id`.
    pub fn issue_into(&self, data_dir: &Path, name: &str, grants: &[String]) {
        let (pair, _) = keys::load_or_create(&data_dir.join("node.key"), KeyKind::Member)
            .expect("create the node's key");
        let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
        let token = self.issue(name, &pair.public_key(), Role::Node, &grants, None);
        std::fs::write(data_dir.join("node.id"), token).expect("write node.id");
    }
}

/// A client on the broker at `url` that signs as `name`, with an identity from the test
/// issuer granting `grants`: a fleet member as far as the nodes can tell. Each call
/// makes a new key.
pub async fn signed_client(url: &str, name: &str, grants: &[&str]) -> bosun_bus::Sealed {
    let nats = bosun_bus::NatsTransport::connect(&bosun_bus::NatsOptions {
        urls: vec![url.to_string()],
        name: name.to_string(),
        ..Default::default()
    })
    .await
    .expect("connect to the broker");
    assert!(
        nats.wait_connected(std::time::Duration::from_secs(10))
            .await,
        "connected to {url}"
    );
    let key = KeyKind::Member.generate();
    let token = issuer().issue(name, &key.public_key(), Role::Node, grants, None);
    let trust = bosun_trust::Trust::new(
        bosun_trust::TrustSettings {
            name: name.to_string(),
            key,
            identity: Some(token),
            issuers: vec![issuer().public_key()],
            insecure_open: false,
            skew_ms: 300_000,
        },
        0,
    )
    .expect("a test identity");
    bosun_bus::Sealed::new(
        std::sync::Arc::new(nats),
        std::sync::Arc::new(trust),
        name.to_string(),
    )
}
