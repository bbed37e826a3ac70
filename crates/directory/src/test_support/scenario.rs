//! Scenario steps the same against OpenLDAP and Active Directory: only the accounts' names
//! and how a name becomes a DN differ.

use crate::{DirectoryConfig, MemberChanges, MembersPolicy, MembershipPlan, Password, Session};

/// `requested` (two accounts that exist, as written, then one that does not) added to
/// `group`, which has one other member: the unknown one is reported, nobody is removed,
/// the two are added and the other member kept; adding them again (a concurrent change)
/// converges as "already a member". The plan.
pub async fn additive_membership(
    session: &mut Session,
    group: &str,
    requested: [&str; 3],
) -> MembershipPlan {
    let plan = session
        .plan_members(group, &requested, MembersPolicy::Additive)
        .await
        .unwrap();
    assert_eq!(plan.unknown, [requested[2]]);
    assert!(plan.changes.remove.is_empty());
    let applied = session.apply_members(group, &plan.changes).await.unwrap();
    assert_eq!((applied.added, applied.removed), (2, 0));
    let members = session.read_members(group).await.unwrap();
    assert_eq!(members.len(), 3, "the other member kept: {members:?}");
    let again = session.apply_members(group, &plan.changes).await.unwrap();
    assert_eq!((again.added, again.already_member), (0, 2));
    plan
}

/// Accounts `[alice, bob, carol]` by name, with `alice` and `bob` members of `group` (and
/// maybe others): `exact` to `[alice, carol]` adds carol and removes everyone else, then
/// removing bob, no longer there, counts as converged (a "not a member" answer).
pub async fn exact_membership_then_absent_removal(
    session: &mut Session,
    group: &str,
    [alice, bob, carol]: [&str; 3],
    others: &[&str],
    dn_of: impl Fn(&str) -> String,
) {
    let exact = session
        .plan_members(group, &[alice, carol], MembersPolicy::Exact)
        .await
        .unwrap();
    assert_eq!(exact.changes.add, [dn_of(carol)]);
    let mut removed: Vec<String> = others.iter().map(|n| dn_of(n)).collect();
    removed.push(dn_of(bob));
    assert_eq!(
        crate::sorted(&exact.changes.remove),
        crate::sorted(&removed)
    );
    session.apply_members(group, &exact.changes).await.unwrap();
    assert_eq!(
        crate::sorted(&session.read_members(group).await.unwrap()),
        crate::sorted(&[dn_of(alice), dn_of(carol)])
    );
    let gone = MemberChanges {
        add: vec![],
        remove: vec![dn_of(bob)],
    };
    assert_eq!(
        session
            .apply_members(group, &gone)
            .await
            .unwrap()
            .not_member,
        1
    );
}

/// The group `name` (at `dn`) exists for `session`; deleted behind its back through
/// `admin`, it is the one missing when `session` looks up `names` again.
pub async fn deleted_behind_our_back(
    session: &mut Session,
    admin: &mut Session,
    name: &str,
    dn: &str,
    names: &[&str],
) {
    let found = session.find_groups(&[name]).await.unwrap();
    assert!(found.missing().is_empty(), "{found:?}");
    admin.delete_entry(dn).await.unwrap();
    assert_eq!(session.find_groups(names).await.unwrap().missing(), [name]);
}

/// A bind with the wrong password `secret` is `BindFailed` ("invalidCredentials (49)"),
/// and neither the error nor the configuration ever shows the password.
pub async fn wrong_password_is_bind_failed_and_never_shown(
    mut config: DirectoryConfig,
    secret: &str,
) {
    config.password = Password::new(secret);
    let err = Session::connect(&config).await.unwrap_err();
    assert_eq!(err.label(), "BindFailed", "{err}");
    assert!(err.to_string().contains("invalidCredentials (49)"), "{err}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{config:?}")] {
        assert!(!shown.contains(secret), "password leaked: {shown}");
    }
}
