//! ACL checks and the identities a session holds.
//!
//! The schemes are ZooKeeper's built-in ones: `world` (only `anyone`), `auth` (at create /
//! setACL time, stands for every authenticated identity of the caller), `digest`
//! (`user:base64(sha1(user:password))`) and `ip` (an address or CIDR block). A session that
//! authenticates as the configured super digest also holds `super:`, which passes every check.

use base64::Engine;
use corral_proto::{Acl, ErrorCode, Id};
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// The digest id for `user:password`: `user:` (the text before the first colon) followed
/// by base64 of the SHA-1 of the whole.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// Turns an auth packet into the identities it proves, or `AuthFailed` for a scheme the
/// server does not know. As in ZooKeeper, a digest is never refused here: a wrong password
/// is simply a different identity, which the ACL checks then refuse. `ip` proves nothing
/// new (the connection's address is already an identity). `super_digest` is the
/// configured `user:hash` whose holder bypasses ACLs.
pub fn authenticate(scheme: &str, auth: &[u8], super_digest: Option<&str>) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
        "ip" => Ok(vec![]),
        "digest" => {
            let text = String::from_utf8_lossy(auth);
            let id = digest(&text);
            let mut ids = vec![];
            if super_digest == Some(id.as_str()) {
                ids.push(Id::new("super", ""));
            }
            ids.push(Id::new("digest", &id));
            Ok(ids)
        }
        _ => Err(ErrorCode::AuthFailed),
    }
}

/// [`check`] as a result: `NoAuth` when refused.
pub fn allow(acl: &[Acl], perm: i32, ids: &[Id]) -> Result<(), ErrorCode> {
    if check(acl, perm, ids) {
        Ok(())
    } else {
        Err(ErrorCode::NoAuth)
    }
}

/// Whether `ids` (the caller's identities) grant `perm` under `acl`.
pub fn check(acl: &[Acl], perm: i32, ids: &[Id]) -> bool {
    if ids.iter().any(|i| i.scheme == "super") || acl.is_empty() {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return true;
        }
        ids.iter().any(|caller| caller.scheme == a.id.scheme && matches(&a.id.scheme, &caller.id, &a.id.id))
    })
}

fn matches(scheme: &str, caller: &str, acl_id: &str) -> bool {
    match scheme {
        "ip" => ip_matches(caller, acl_id),
        _ => caller == acl_id,
    }
}

/// `ip` ACL ids: an address (`10.1.2.3`) or a CIDR block (`10.0.0.0/8`).
fn parse_ip_acl(acl_id: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match acl_id.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (acl_id, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

fn ip_matches(caller: &str, acl_id: &str) -> bool {
    let (Some((net, bits)), Ok(addr)) = (parse_ip_acl(acl_id), caller.parse::<IpAddr>()) else {
        return false;
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// A digest ACL id is `user:hash`: exactly two parts around one colon, where, as with
/// Java's `String.split`, an empty hash does not count as a part.
fn valid_digest_id(id: &str) -> bool {
    matches!(id.split_once(':'), Some((_, hash)) if !hash.is_empty() && !hash.contains(':'))
}

/// Checks and expands an ACL list given at create or setACL time (ZooKeeper's
/// `fixupACL`): empty lists, unknown schemes, malformed ids and an `auth` entry from a
/// caller with no authenticated identity are `InvalidACL`.
pub fn fixup(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    if acl.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out: Vec<Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => out.push(a.clone()),
            "auth" => {
                let mut any = false;
                for id in ids.iter().filter(|i| i.scheme != "ip" && i.scheme != "super") {
                    any = true;
                    out.push(Acl { perms: a.perms, id: id.clone() });
                }
                if !any {
                    return Err(ErrorCode::InvalidAcl);
                }
            }
            "digest" if valid_digest_id(&a.id.id) => out.push(a.clone()),
            "ip" if parse_ip_acl(&a.id.id).is_some() => out.push(a.clone()),
            _ => return Err(ErrorCode::InvalidAcl),
        }
    }
    // ZooKeeper drops exact duplicates that `auth` expansion can produce (lists are a
    // few entries long: compare in place rather than cloning into a set).
    let mut i = 1;
    while i < out.len() {
        if out[..i].contains(&out[i]) {
            out.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::Perms;

    #[test]
    fn digest_matches_zookeeper() {
        // The well-known example from ZooKeeper's documentation tooling.
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn checks() {
        let ip = vec![Id::new("ip", "127.0.0.1")];
        assert!(check(&Acl::open_unsafe(), Perms::ADMIN, &ip));
        assert!(check(&Acl::read_unsafe(), Perms::READ, &ip));
        assert!(!check(&Acl::read_unsafe(), Perms::WRITE, &ip));
        let d = vec![Acl::new(Perms::ALL, "digest", &digest("bob:pw"))];
        assert!(!check(&d, Perms::READ, &ip));
        let bob = vec![Id::new("ip", "127.0.0.1"), Id::new("digest", &digest("bob:pw"))];
        assert!(check(&d, Perms::READ, &bob));
        assert!(check(&d, Perms::READ, &[Id::new("super", "")]));
        let net = vec![Acl::new(Perms::READ, "ip", "127.0.0.0/8")];
        assert!(check(&net, Perms::READ, &ip));
        assert!(!check(&net, Perms::READ, &[Id::new("ip", "10.0.0.1")]));
    }

    #[test]
    fn fixups() {
        let ip = vec![Id::new("ip", "127.0.0.1")];
        assert_eq!(fixup(&[], &ip), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[Acl::new(31, "auth", "")], &ip), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[Acl::new(31, "world", "nobody")], &ip), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[Acl::new(31, "foo", "x")], &ip), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[Acl::new(31, "ip", "300.1.1.1")], &ip), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[Acl::new(31, "digest", "nocolon")], &ip), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[Acl::new(31, "digest", "user:")], &ip), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[Acl::new(31, "digest", "a:b:c")], &ip), Err(ErrorCode::InvalidAcl));
        assert!(fixup(&[Acl::new(31, "digest", ":x")], &ip).is_ok());
        let bob = Id::new("digest", &digest("bob:pw"));
        let ids = vec![ip[0].clone(), bob.clone()];
        assert_eq!(fixup(&[Acl::new(31, "auth", "")], &ids).unwrap(), vec![Acl { perms: 31, id: bob }]);
    }

    #[test]
    fn authentication() {
        let ids = authenticate("digest", b"super:test", Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")).unwrap();
        assert_eq!(ids[0], Id::new("super", ""));
        assert_eq!(authenticate("digest", b"a:b:c", None).unwrap()[0].id, digest("a:b:c"));
        assert!(digest("a:b:c").starts_with("a:"));
        assert_eq!(authenticate("world", b"x", None), Err(ErrorCode::AuthFailed));
        assert_eq!(authenticate("kerberos", b"x", None), Err(ErrorCode::AuthFailed));
    }
}
