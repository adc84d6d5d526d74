//! A node's local policy: which signers may run what here, whatever their grants say.
//! Both must allow a method: the issuer's grants (fleet-wide) and this policy (the
//! node's own say). Without rules nothing runs from other nodes.

use crate::identity::{Grant, IdentityError};

/// One rule: `[NAME=]GRANT`, where `NAME` is a signer name pattern (`*`, `?`) and
/// `GRANT` is a [`Grant`]; without `NAME=` the rule is for every signer.
#[derive(Debug, Clone)]
struct Rule {
    who: Option<String>,
    grant: Grant,
}

/// The rules, parsed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Parse rules such as `*`, `ping`, `central=*`, `ops-*=cliCommand:uptime`.
    pub fn parse(rules: &[String]) -> Result<Policy, IdentityError> {
        let rules = rules
            .iter()
            .map(|r| {
                let (who, grant) = match r.split_once('=') {
                    Some((who, g)) if !who.contains(':') => (Some(who.trim().to_string()), g),
                    _ => (None, r.as_str()),
                };
                Ok(Rule {
                    who,
                    grant: Grant::parse(grant)?,
                })
            })
            .collect::<Result<Vec<_>, IdentityError>>()?;
        Ok(Policy { rules })
    }

    /// True when no rule is set (everything from other nodes is refused).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when a rule lets `signer` run `method` with `args`.
    pub fn allows(&self, signer: &str, method: &str, args: &str) -> bool {
        self.rules.iter().any(|r| {
            r.who
                .as_deref()
                .is_none_or(|w| wildmatch::WildMatch::new(w).matches(signer))
                && r.grant.allows(method, args)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_signers_and_grants() {
        let p = Policy::parse(&[
            "central=*".into(),
            "ops-*=cliCommand:uptime".into(),
            "ping".into(),
        ])
        .unwrap();
        assert!(p.allows("central", "cliCommand", "rm -rf /"));
        assert!(p.allows("ops-1", "cliCommand", "uptime"));
        assert!(!p.allows("ops-1", "cliCommand", "sh"));
        assert!(p.allows("anyone", "ping", ""));
        assert!(!p.allows("anyone", "cliCommand", "uptime"));
        assert!(Policy::default().is_empty());
        assert!(!Policy::default().allows("central", "ping", ""));
        assert!(Policy::parse(&["x=bad method".into()]).is_err());
    }
}
