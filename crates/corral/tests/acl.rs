//! ACL schemes: world, digest, auth, ip, and the super user from superDigest.

mod common;

use common::*;
use zk::{Acl, Acls, AuthId, CreateMode, Permission};
use zookeeper_client as zk;

fn open() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn digest(perm: Permission, user: &str, pw: &str) -> Acl {
    Acl::new(perm, AuthId::new("digest", &digest_id(user, pw)))
}

async fn client_as(server: &Server, user_pw: &str) -> zk::Client {
    server.connect_with(zk::Client::connector().with_auth("digest", user_pw.as_bytes())).await
}

#[tokio::test]
async fn world_permissions_bit_by_bit() {
    let server = Server::start();
    let admin = server.connect().await;
    let c = server.connect().await;
    admin.create("/w", b"", &open()).await.unwrap();
    admin.create("/w/child", b"", &open()).await.unwrap();

    let set = |perm: Permission| {
        let acl = [Acl::new(perm, AuthId::anyone())];
        let (admin, c) = (admin.clone(), c.clone());
        async move {
            // ADMIN is always included so the test can keep changing the ACL.
            let acl = [Acl::new(acl[0].permission() | Permission::ADMIN, AuthId::anyone())];
            admin.set_acl("/w", &acl, None).await.unwrap();
            // `c` may be on another member of an ensemble: it syncs to see the change.
            c.sync("/w").await.unwrap();
        }
    };

    set(Permission::NONE).await;
    assert_eq!(c.get_data("/w").await, Err(zk::Error::NoAuth));
    assert_eq!(c.list_children("/w").await, Err(zk::Error::NoAuth));
    assert_eq!(c.set_data("/w", b"x", None).await, Err(zk::Error::NoAuth));
    assert_eq!(c.create("/w/new", b"", &open()).await, Err(zk::Error::NoAuth));
    assert_eq!(c.delete("/w/child", None).await, Err(zk::Error::NoAuth));
    assert!(c.check_stat("/w").await.unwrap().is_some(), "exists needs no permission");
    assert!(c.get_acl("/w").await.is_ok(), "ADMIN allows getACL");

    set(Permission::READ).await;
    c.get_data("/w").await.unwrap();
    c.list_children("/w").await.unwrap();
    assert_eq!(c.set_data("/w", b"x", None).await, Err(zk::Error::NoAuth));

    set(Permission::WRITE).await;
    assert_eq!(c.get_data("/w").await, Err(zk::Error::NoAuth));
    c.set_data("/w", b"x", None).await.unwrap();

    set(Permission::CREATE).await;
    c.create("/w/new", b"", &open()).await.unwrap();
    assert_eq!(c.delete("/w/new", None).await, Err(zk::Error::NoAuth));

    set(Permission::DELETE).await;
    c.delete("/w/new", None).await.unwrap();
    c.delete("/w/child", None).await.unwrap();
    assert_eq!(c.create("/w/again", b"", &open()).await, Err(zk::Error::NoAuth));

    // ACLs are per node, not inherited: an open child of a closed parent is reachable.
    admin.create("/closed", b"", &open()).await.unwrap();
    admin.create("/closed/open", b"o", &open()).await.unwrap();
    admin.set_acl("/closed", &[Acl::new(Permission::NONE, AuthId::anyone())], None).await.unwrap();
    // `c` may be on another member of an ensemble: sync before reading admin's writes.
    c.sync("/closed").await.unwrap();
    assert_eq!(c.get_data("/closed/open").await.unwrap().0, b"o");
    assert_eq!(c.get_data("/closed").await, Err(zk::Error::NoAuth));
}

#[tokio::test]
async fn digest_identities() {
    let server = Server::start();
    let alice = client_as(&server, "alice:apw").await;
    let bob = client_as(&server, "bob:bpw").await;
    let wrong = client_as(&server, "alice:not-her-password").await;
    let anon = server.connect().await;

    let acl = [digest(Permission::READ | Permission::WRITE, "alice", "apw")];
    alice.create("/d", b"x", &CreateMode::Persistent.with_acls(Acls::new(&acl))).await.unwrap();
    assert_eq!(alice.get_data("/d").await.unwrap().0, b"x");
    alice.set_data("/d", b"y", None).await.unwrap();
    assert_eq!(alice.set_acl("/d", &acl, None).await, Err(zk::Error::NoAuth), "no ADMIN bit");
    for c in [&bob, &wrong, &anon] {
        // They may be on other members of an ensemble: sync before reading alice's writes.
        c.sync("/d").await.unwrap();
        assert_eq!(c.get_data("/d").await, Err(zk::Error::NoAuth));
        assert_eq!(c.set_data("/d", b"z", None).await, Err(zk::Error::NoAuth));
    }

    // A session can hold several identities; any one that matches is enough.
    bob.auth("digest", b"alice:apw").await.unwrap();
    assert_eq!(bob.get_data("/d").await.unwrap().0, b"y");
    let mut users = bob.list_auth_users().await.unwrap();
    users.sort_by(|a, b| (a.scheme(), a.user()).cmp(&(b.scheme(), b.user())));
    assert_eq!(
        users,
        vec![
            zk::AuthUser::new("digest", "alice"),
            zk::AuthUser::new("digest", "bob"),
            zk::AuthUser::new("ip", "127.0.0.1"),
        ]
    );

    // Without ADMIN even alice sees her own entry masked as user:x; the full
    // user:base64(sha1("user:password")) form is checked in the test below.
    let (got, _) = alice.get_acl("/d").await.unwrap();
    assert_eq!(got, vec![Acl::new(Permission::READ | Permission::WRITE, AuthId::new("digest", "alice:x"))]);
}

#[tokio::test]
async fn get_acl_hides_digests_from_readers_without_admin() {
    let server = Server::start();
    let owner = client_as(&server, "owner:pw").await;
    let acl = [Acl::new(Permission::READ, AuthId::anyone()), digest(Permission::ALL, "owner", "pw")];
    owner.create("/secret", b"", &CreateMode::Persistent.with_acls(Acls::new(&acl))).await.unwrap();
    let (full, _) = owner.get_acl("/secret").await.unwrap();
    assert_eq!(full, acl.to_vec());
    let reader = server.connect().await;
    let (shown, _) = reader.get_acl("/secret").await.unwrap();
    assert_eq!(shown[0], acl[0]);
    assert_eq!(shown[1].scheme(), "digest");
    assert_eq!(shown[1].id(), "owner:x", "the hash is masked without ADMIN");
    assert_eq!(shown[1].permission(), Permission::ALL);
}

#[tokio::test]
async fn auth_scheme_expands_to_the_creators_identities() {
    let server = Server::start();
    let c = client_as(&server, "carol:cpw").await;
    c.auth("digest", b"dave:dpw").await.unwrap();
    c.create("/mine", b"m", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
    let (mut acl, _) = c.get_acl("/mine").await.unwrap();
    acl.sort_by(|a, b| a.id().cmp(b.id()));
    // Only authenticated identities are used: digest ids, not the ip one.
    assert_eq!(acl, vec![digest(Permission::ALL, "carol", "cpw"), digest(Permission::ALL, "dave", "dpw")]);

    let dave = client_as(&server, "dave:dpw").await;
    assert_eq!(dave.get_data("/mine").await.unwrap().0, b"m");
    let anon = server.connect().await;
    assert_eq!(anon.get_data("/mine").await, Err(zk::Error::NoAuth));
    // With no authenticated identity, an auth ACL is invalid.
    assert_eq!(anon.create("/theirs", b"", &CreateMode::Persistent.with_acls(Acls::creator_all())).await, Err(zk::Error::InvalidAcl));
    // setACL with "auth" expands the same way.
    c.create("/later", b"", &open()).await.unwrap();
    c.set_acl("/later", &[Acl::new(Permission::READ | Permission::ADMIN, AuthId::authed())], None).await.unwrap();
    let (acl, _) = c.get_acl("/later").await.unwrap();
    assert_eq!(acl.len(), 2);
    assert!(acl.iter().all(|a| a.scheme() == "digest" && a.permission() == Permission::READ | Permission::ADMIN));
}

#[tokio::test]
async fn ip_scheme() {
    let server = Server::start();
    let c = server.connect().await;
    let cases: [(&str, bool); 5] = [
        ("127.0.0.1", true),
        ("127.0.0.0/8", true),
        ("127.0.0.1/32", true),
        ("10.0.0.0/8", false),
        ("192.168.1.1", false),
    ];
    for (i, (ip, allowed)) in cases.iter().enumerate() {
        let path = format!("/ip{i}");
        let acl = [Acl::new(Permission::READ, AuthId::new("ip", ip)), Acl::new(Permission::ADMIN, AuthId::anyone())];
        c.create(&path, b"", &CreateMode::Persistent.with_acls(Acls::new(&acl))).await.unwrap();
        let got = c.get_data(&path).await;
        if *allowed {
            assert!(got.is_ok(), "ip:{ip} should match 127.0.0.1: {got:?}");
        } else {
            assert_eq!(got, Err(zk::Error::NoAuth), "ip:{ip} should not match 127.0.0.1");
        }
    }
}

#[tokio::test]
async fn super_digest_bypasses_acls() {
    let server = Server::start_with(&[&format!("superDigest={}", digest_id("super", "secret"))]);
    let owner = client_as(&server, "owner:pw").await;
    owner.create("/vault", b"gold", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
    owner.create("/vault/inner", b"", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
    owner.set_acl("/vault", &[digest(Permission::CREATE | Permission::READ, "owner", "pw")], None).await.unwrap();

    // Under the ensemble harness each session may be on another member: each syncs
    // before it reads what another wrote.
    let wrong = client_as(&server, "super:guess").await;
    wrong.sync("/vault").await.unwrap();
    assert_eq!(wrong.get_data("/vault").await, Err(zk::Error::NoAuth));

    let root = client_as(&server, "super:secret").await;
    root.sync("/vault").await.unwrap();
    assert_eq!(root.get_data("/vault").await.unwrap().0, b"gold");
    root.set_data("/vault", b"lead", None).await.unwrap();
    root.delete("/vault/inner", None).await.unwrap();
    root.set_acl("/vault", &[Acl::new(Permission::READ, AuthId::anyone())], None).await.unwrap();
    root.delete("/vault", None).await.unwrap();
    owner.sync("/vault").await.unwrap();
    assert_eq!(owner.check_stat("/vault").await.unwrap(), None);
    // Super may write /zookeeper/config's ACL-protected neighbour too.
    assert!(root.get_acl("/zookeeper/config").await.is_ok());
}
