//! User-interactive authentication: which stages guard which request, and the 401 body that
//! tells a client what is left to do.

use serde_json::{json, Value};

use crate::config::RegistrationMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Dummy,
    RegistrationToken,
    Password,
    /// The person approves on the account page (src/oauth/account.rs) and the client retries:
    /// how a client signed in with OAuth, which never sees the password, authorises a
    /// cross-signing reset (spec v1.15; the MSC4312 unstable name below is what older clients
    /// look for).
    OAuth,
    UnstableCrossSigningReset,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Dummy => "m.login.dummy",
            Stage::RegistrationToken => "m.login.registration_token",
            Stage::Password => "m.login.password",
            Stage::OAuth => "m.oauth",
            Stage::UnstableCrossSigningReset => "org.matrix.cross_signing_reset",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        [
            Stage::Dummy,
            Stage::RegistrationToken,
            Stage::Password,
            Stage::OAuth,
            Stage::UnstableCrossSigningReset,
        ]
        .into_iter()
        .find(|stage| stage.as_str() == kind)
    }
}

/// What the UIA session authorises; a session completed for one purpose is useless for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Register,
    ChangePassword,
    Deactivate,
    DeleteDevices,
    /// Replacing cross-signing keys (the first upload needs no auth).
    CrossSigning,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::ChangePassword => "password",
            Purpose::Deactivate => "deactivate",
            Purpose::DeleteDevices => "delete_devices",
            Purpose::CrossSigning => "device_signing",
        }
    }
}

/// The flows a purpose offers; any one of them, completed, authorises the request.
/// `oauth_device`: the request comes from a device signed in through OAuth (src/oauth/), whose
/// client may never have seen the password; a cross-signing reset then also offers approval on
/// the account page.
pub fn flows(
    purpose: Purpose,
    registration: RegistrationMode,
    oauth_device: bool,
) -> Vec<Vec<Stage>> {
    match (purpose, registration) {
        (Purpose::CrossSigning, _) if oauth_device => vec![
            vec![Stage::OAuth],
            vec![Stage::UnstableCrossSigningReset],
            vec![Stage::Password],
        ],
        (Purpose::Register, RegistrationMode::Open) => vec![vec![Stage::Dummy]],
        (Purpose::Register, RegistrationMode::Token) => vec![vec![Stage::RegistrationToken]],
        (Purpose::Register, RegistrationMode::Closed) => vec![],
        _ => vec![vec![Stage::Password]],
    }
}

pub fn is_complete(flows: &[Vec<Stage>], completed: &[Stage]) -> bool {
    flows
        .iter()
        .any(|flow| flow.iter().all(|stage| completed.contains(stage)))
}

/// The 401 answer: the flows, their stages' parameters, what this session has completed, and
/// why the last stage failed.
pub fn challenge(
    flows: &[Vec<Stage>],
    params: Value,
    session: &str,
    completed: &[Stage],
    failure: Option<(&str, &str)>,
) -> Value {
    let mut body = json!({
        "flows": flows
            .iter()
            .map(|flow| json!({ "stages": flow.iter().map(|s| s.as_str()).collect::<Vec<_>>() }))
            .collect::<Vec<_>>(),
        "params": params,
        "session": session,
    });
    if !completed.is_empty() {
        body["completed"] = json!(completed.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    }
    if let Some((errcode, error)) = failure {
        body["errcode"] = json!(errcode);
        body["error"] = json!(error);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_flows_follow_the_mode() {
        let open = flows(Purpose::Register, RegistrationMode::Open, false);
        assert!(is_complete(&open, &[Stage::Dummy]));
        let token = flows(Purpose::Register, RegistrationMode::Token, false);
        assert!(!is_complete(&token, &[Stage::Dummy]));
        assert!(is_complete(&token, &[Stage::RegistrationToken]));
        assert!(!is_complete(
            &flows(Purpose::Register, RegistrationMode::Closed, false),
            &[Stage::Dummy]
        ));
        assert!(is_complete(
            &flows(Purpose::Deactivate, RegistrationMode::Open, false),
            &[Stage::Password]
        ));
        // A cross-signing reset: the password, or an approval on the account page.
        let reset = flows(Purpose::CrossSigning, RegistrationMode::Closed, true);
        assert!(is_complete(&reset, &[Stage::OAuth]));
        assert!(is_complete(&reset, &[Stage::Password]));
        let password_device = flows(Purpose::CrossSigning, RegistrationMode::Closed, false);
        assert!(!is_complete(&password_device, &[Stage::OAuth]));
        assert!(!is_complete(
            &flows(Purpose::Deactivate, RegistrationMode::Open, true),
            &[Stage::OAuth]
        ));
    }

    #[test]
    fn challenge_lists_flows_session_and_progress() {
        let body = challenge(
            &[vec![Stage::RegistrationToken]],
            json!({}),
            "abc",
            &[],
            Some(("M_FORBIDDEN", "bad token")),
        );
        assert_eq!(body["flows"][0]["stages"][0], "m.login.registration_token");
        assert_eq!(body["session"], "abc");
        assert_eq!(body["errcode"], "M_FORBIDDEN");
        assert!(body.get("completed").is_none());
    }
}
