//! Who is at the other end of a TCP connection to the steward or LSDSuite port, and
//! whether they may use it.
//!
//! Both ports run whatever arrives with the node's rights, and they have no token. A
//! connection from a loopback address comes from a process on this host: its user is
//! the owner of the client's socket, found in `/proc/net/tcp` (or `tcp6`) on the row
//! whose local address and port are the peer's. Only the node's own user and root may
//! use the ports (they could use the node's socket as well); anyone else is refused, so
//! a local unprivileged user cannot run commands as the node's user. A connection from
//! beyond loopback has no user to check: it is refused unless `tcp_allow_remote` is set.

use std::net::{IpAddr, SocketAddr};

/// Whether a peer may use the port, and if not, the line that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The node's own user, root, or a remote peer while `tcp_allow_remote` is set.
    Allowed,
    /// Refused, with the reason for the client and the error log.
    Refused(String),
}

/// Judge the peer `peer` of a connection accepted on `local`. Reads `/proc`: call it off
/// the async workers.
pub fn judge(peer: SocketAddr, local: SocketAddr, allow_remote: bool) -> Verdict {
    if !is_loopback(peer.ip()) {
        return if allow_remote {
            Verdict::Allowed
        } else {
            Verdict::Refused(format!(
                "refused: {} is not on this host, and tcp_allow_remote is off; use the \
                 socket or a signed message, or set tcp_allow_remote = true on a trusted \
                 network",
                peer.ip()
            ))
        };
    }
    let own = match own_uid() {
        Ok(uid) => uid,
        Err(e) => return Verdict::Refused(format!("refused: cannot tell this node's user: {e}")),
    };
    match socket_owner(peer, local) {
        Ok(Some(uid)) if uid == own || uid == 0 => Verdict::Allowed,
        Ok(Some(uid)) => Verdict::Refused(format!(
            "refused: local user {uid} is not the node's user; use the socket or a signed \
             message"
        )),
        Ok(None) => Verdict::Refused(
            "refused: cannot tell which local user connected (its socket is not in \
             /proc/net/tcp, e.g. another network namespace); use the socket or a signed \
             message"
                .into(),
        ),
        Err(e) => Verdict::Refused(format!(
            "refused: cannot tell which local user connected ({e}); use the socket or a \
             signed message"
        )),
    }
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The effective user of this process: the owner of `/proc/self`.
fn own_uid() -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// The owner of the client socket at `peer` connected to `local`, from `/proc/net/tcp`
/// and `/proc/net/tcp6`; `None` when no row matches.
pub fn socket_owner(peer: SocketAddr, local: SocketAddr) -> std::io::Result<Option<u32>> {
    for (table, peer_text, local_text) in candidates(peer, local) {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = owner_in(&text, &peer_text, &local_text) {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

/// The uid on the row whose local address is `peer` and remote address `local` (both as
/// the table writes them), in the text of a `/proc/net/tcp` table.
fn owner_in(table: &str, peer: &str, local: &str) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (row_local, row_remote, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        (row_local.eq_ignore_ascii_case(peer) && row_remote.eq_ignore_ascii_case(local))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// Where the client's socket may be listed, and how its address and ours read there: an
/// IPv4-mapped peer of an IPv6 listener may be an IPv4 socket.
fn candidates(peer: SocketAddr, local: SocketAddr) -> Vec<(&'static str, String, String)> {
    let mut found = Vec::new();
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    if let (Some(p), Some(l)) = (v4(peer.ip()), v4(local.ip())) {
        found.push((
            "/proc/net/tcp",
            format!("{:08X}:{:04X}", u32::from_ne_bytes(p.octets()), peer.port()),
            format!(
                "{:08X}:{:04X}",
                u32::from_ne_bytes(l.octets()),
                local.port()
            ),
        ));
    }
    if let (IpAddr::V6(p), IpAddr::V6(l)) = (peer.ip(), local.ip()) {
        found.push((
            "/proc/net/tcp6",
            v6_text(p, peer.port()),
            v6_text(l, local.port()),
        ));
    }
    found
}

/// An IPv6 address and port as `/proc/net/tcp6` writes them: four 32-bit words, each in
/// the host's byte order.
fn v6_text(ip: std::net::Ipv6Addr, port: u16) -> String {
    let octets = ip.octets();
    let words: String = octets
        .chunks(4)
        .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    format!("{words}:{port:04X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_connected_socket_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(socket_owner(peer, local).unwrap(), Some(own_uid().unwrap()));
        assert_eq!(judge(peer, local, false), Verdict::Allowed);

        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let owner = socket_owner(peer, server.local_addr().unwrap()).unwrap();
        assert_eq!(owner, Some(own_uid().unwrap()));
    }

    #[test]
    fn rows_are_matched_on_both_addresses() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
            1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 2 1\n";
        assert_eq!(
            owner_in(table, "0100007F:D431", "0100007F:1F90"),
            Some(1001)
        );
        assert_eq!(owner_in(table, "0100007F:D431", "0100007F:1F91"), None);
        assert_eq!(
            owner_in(table, "0100007f:d431", "0100007F:1F90"),
            Some(1001)
        );
    }

    #[test]
    fn a_remote_peer_needs_tcp_allow_remote() {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let local: SocketAddr = "192.0.2.1:8090".parse().unwrap();
        match judge(peer, local, false) {
            Verdict::Refused(line) => assert!(line.contains("tcp_allow_remote"), "{line}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(judge(peer, local, true), Verdict::Allowed);
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }
}
