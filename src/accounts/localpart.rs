//! User id rules for new accounts and for login identifiers.

use ruma::{OwnedUserId, ServerName, UserId};

/// Why a requested username cannot be used (`M_INVALID_USERNAME`).
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidUsername(pub &'static str);

/// Parses the username a client asks to register. The spec restricts new localparts to
/// `a-z 0-9 . _ = - / +`; the historical user id grammar is only for ids that already exist.
/// ASCII capitals are folded, as login folds them: "Alice" registers (and later logs in) as
/// `@alice`.
pub fn new_user_id(username: &str, server: &ServerName) -> Result<OwnedUserId, InvalidUsername> {
    let username = username.to_ascii_lowercase();
    if username.is_empty() {
        return Err(InvalidUsername("the username is empty"));
    }
    if !username
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/+".contains(&b))
    {
        return Err(InvalidUsername(
            "usernames may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'",
        ));
    }
    let full = format!("@{username}:{server}");
    if full.len() > 255 {
        return Err(InvalidUsername(
            "the user id would be longer than 255 bytes",
        ));
    }
    UserId::parse(full).map_err(|_| InvalidUsername("not a valid user id"))
}

/// The local user a login identifier names: a full user id on this server, or a bare localpart.
/// Case is folded, as registration only ever creates lowercase localparts.
pub fn login_user_id(identifier: &str, server: &ServerName) -> Option<OwnedUserId> {
    let lowered = identifier.to_lowercase();
    let full = if lowered.starts_with('@') {
        lowered
    } else {
        format!("@{lowered}:{server}")
    };
    let user_id = UserId::parse(full).ok()?;
    (user_id.server_name() == server).then_some(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> &'static ServerName {
        <&ServerName>::try_from("example.org").unwrap()
    }

    #[test]
    fn registration_accepts_only_the_new_localpart_grammar() {
        assert_eq!(
            new_user_id("alice.b-1", server()).unwrap().as_str(),
            "@alice.b-1:example.org"
        );
        assert_eq!(
            new_user_id("Alice", server()).unwrap().as_str(),
            "@alice:example.org"
        );
        assert!(new_user_id("Ålice", server()).is_err());
        assert!(new_user_id("al ice", server()).is_err());
        assert!(new_user_id("", server()).is_err());
        assert!(new_user_id(&"a".repeat(250), server()).is_err());
    }

    #[test]
    fn login_takes_localparts_and_full_ids_of_this_server_only() {
        let alice = "@alice:example.org";
        assert_eq!(login_user_id("alice", server()).unwrap().as_str(), alice);
        assert_eq!(
            login_user_id("@Alice:example.org", server())
                .unwrap()
                .as_str(),
            alice
        );
        assert!(login_user_id("@alice:other.org", server()).is_none());
    }
}
