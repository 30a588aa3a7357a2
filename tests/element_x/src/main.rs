//! Element X's client library against a homeserver: matrix-rust-sdk logs two users in with a
//! password, runs `SyncService` (the room list over simplified sliding sync, and the encryption
//! sync) for each, and checks what a person would see: the room list in the expected order, a
//! room's timeline with history paged back, a message each way, and an encrypted message
//! decrypted by the other user. `tests/element_x/run.py` prepares the server and the rooms and
//! passes them in the environment; each step prints one line, and any failure exits non-zero.
//! With `OAUTH=1` it instead signs a new user up the way Element X does, through OAuth
//! (`client.oauth()`, against our server only: Synapse needs a separate service for it).

#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoom;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, RoomId};
use matrix_sdk::authentication::oauth::registration::{
    ApplicationType, ClientMetadata, Localized, OAuthGrantType,
};
use matrix_sdk::ruma::api::client::discovery::get_authorization_server_metadata::v1::Prompt;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::{Client, Room};
use url::Url;
use matrix_sdk_ui::eyeball_im::Vector;
use matrix_sdk_ui::room_list_service::filters::new_filter_non_left;
use matrix_sdk_ui::room_list_service::RoomListItem;
use matrix_sdk_ui::sync_service::SyncService;
use matrix_sdk_ui::timeline::RoomExt;
use matrix_sdk_ui::Timeline;

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

/// A logged-in user with its sync service running.
struct Session {
    client: Client,
    sync: SyncService,
}

async fn login(homeserver: &str, user: &str, password: &str) -> Result<Session> {
    let client = Client::builder()
        .homeserver_url(homeserver)
        .build()
        .await
        .context("client")?;
    client
        .matrix_auth()
        .login_username(user, password)
        .initial_device_display_name("element-x-check")
        .await
        .with_context(|| format!("password login of {user}"))?;
    let sync = SyncService::builder(client.clone())
        .build()
        .await
        .context("sync service")?;
    sync.start().await;
    Ok(Session { client, sync })
}

/// Polls `check` until it yields a value or `secs` pass.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The message bodies a timeline shows, oldest first (undecryptable ones as "<utd>").
async fn bodies(timeline: &Timeline) -> Vec<String> {
    timeline
        .items()
        .await
        .iter()
        .filter_map(|item| item.as_event().cloned())
        .filter_map(|event| {
            let content = event.content();
            if let Some(message) = content.as_message() {
                Some(message.body().to_owned())
            } else if content.is_unable_to_decrypt() {
                Some("<utd>".to_owned())
            } else {
                None
            }
        })
        .collect()
}

async fn room(session: &Session, room_id: &RoomId) -> Result<Room> {
    eventually(&format!("{room_id} known to the client"), 60, || async {
        session.client.get_room(room_id)
    })
    .await
}

/// Element X's sign-up: the SDK registers itself as an OAuth client, builds the authorization URL
/// with `prompt=create`, and `run.py` plays the person in the browser (the registration and
/// consent pages) and hands back the URL the server redirected to.
async fn oauth_sign_up(homeserver: &str) -> Result<()> {
    let client = Client::builder()
        .homeserver_url(homeserver)
        .build()
        .await
        .context("client")?;
    let oauth = client.oauth();
    let redirect = Url::parse("http://127.0.0.1/callback")?;
    let metadata = ClientMetadata::new(
        ApplicationType::Native,
        vec![OAuthGrantType::AuthorizationCode {
            redirect_uris: vec![redirect.clone()],
        }],
        Localized::new(Url::parse("https://element-x-check.example.org/")?, []),
    );
    let data = oauth
        .login(redirect, None, Some(Raw::new(&metadata)?.into()), None)
        .prompt(vec![Prompt::Create])
        .build()
        .await
        .context("discovery, client registration and the authorization URL")?;
    println!("oauth-authorize {}", data.url);
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let back = Url::parse(line.trim()).context("the redirect back from run.py")?;
    oauth
        .finish_login(back.into())
        .await
        .context("code exchange")?;
    let me = client.whoami().await.context("whoami with the OAuth token")?;
    oauth
        .refresh_access_token()
        .await
        .context("refresh through the token endpoint")?;
    client.whoami().await.context("whoami after the refresh")?;
    println!(
        "ok oauth: signed up through the pages as {} (device {:?}), token refreshed",
        me.user_id, me.device_id
    );
    // `oauth.logout()` is not tried: the SDK's OAuth library refuses a revocation endpoint
    // that is not https, and this check talks plain HTTP (its TLS-less SDK build); revocation
    // is covered by tests/integration/test_oauth.py and matrix-js-sdk's client there.
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var("OAUTH").as_deref() == Ok("1") {
        return oauth_sign_up(&env("HOMESERVER")?).await;
    }
    let homeserver = env("HOMESERVER")?;
    let password = env("PASSWORD")?;
    let expected: Vec<OwnedRoomId> = env("EXPECTED_ORDER")?
        .split(',')
        .map(|r| r.try_into().context("a room id"))
        .collect::<Result<_>>()?;
    let history_room: OwnedRoomId = env("HISTORY_ROOM")?.try_into()?;
    let history_first = env("HISTORY_FIRST")?;
    let bob_id: OwnedUserId = env("BOB")?.try_into()?;

    let started = Instant::now();
    let alice = login(&homeserver, &env("ALICE")?, &password).await?;
    let bob = login(&homeserver, bob_id.as_str(), &password).await?;
    println!("ok login: both users logged in with a password, sync services started");

    // The room list, as Element X shows it (joined and invited rooms, its own sort).
    let service = alice.sync.room_list_service();
    let all_rooms = service.all_rooms().await?;
    let (stream, controller) = all_rooms.entries_with_dynamic_adapters(200);
    controller.set_filter(Box::new(new_filter_non_left()));
    let mut stream = Box::pin(stream);
    let mut shown: Vector<RoomListItem> = Vector::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ids: Vec<OwnedRoomId> = shown.iter().map(|r| r.room_id().to_owned()).collect();
        if ids == expected {
            break;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.next()).await {
            Ok(Some(diffs)) => {
                for diff in diffs {
                    diff.apply(&mut shown);
                }
            }
            _ => bail!("room list never showed {expected:?}; last seen {ids:?}"),
        }
    }
    println!(
        "ok room list: {} rooms in the expected order after {:?}",
        expected.len(),
        started.elapsed()
    );

    // A timeline with history paged back to its first message.
    let alice_room = room(&alice, &history_room).await?;
    let timeline = alice_room.timeline().await?;
    let mut reached_start = false;
    for _ in 0..20 {
        if bodies(&timeline).await.contains(&history_first) {
            break;
        }
        reached_start = timeline.paginate_backwards(20).await?;
        if reached_start {
            break;
        }
    }
    // The timeline applies a page's items asynchronously: give them a moment to show.
    let shown = eventually(&format!("{history_first:?} in the timeline"), 20, || async {
        let seen = bodies(&timeline).await;
        seen.contains(&history_first).then_some(seen)
    })
    .await;
    let seen = match shown {
        Ok(seen) => seen,
        Err(_) => bail!(
            "paginating back never showed {history_first:?} (start reached: {reached_start}); saw {:?}",
            bodies(&timeline).await
        ),
    };
    println!(
        "ok timeline: {} messages after paging back, the first is {history_first:?}",
        seen.len()
    );

    // A message each way in that room.
    let bob_timeline = room(&bob, &history_room).await?.timeline().await?;
    timeline
        .send(RoomMessageEventContent::text_plain("hello from alice").into())
        .await?;
    eventually("bob to see alice's message", 60, || async {
        bodies(&bob_timeline)
            .await
            .contains(&"hello from alice".to_owned())
            .then_some(())
    })
    .await?;
    bob_timeline
        .send(RoomMessageEventContent::text_plain("hello from bob").into())
        .await?;
    eventually("alice to see bob's reply", 60, || async {
        bodies(&timeline)
            .await
            .contains(&"hello from bob".to_owned())
            .then_some(())
    })
    .await?;
    println!("ok messages: alice and bob each saw the other's message live");

    // An encrypted room: alice creates it with bob invited; bob joins and decrypts.
    let mut create = CreateRoom::new();
    create.invite = vec![bob_id.clone()];
    create.initial_state = vec![InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let secret_room = alice.client.create_room(create).await?;
    let secret_id = secret_room.room_id().to_owned();
    let bob_secret = room(&bob, &secret_id).await?;
    bob_secret.join().await.context("bob joins the encrypted room")?;
    eventually("alice to see bob joined", 60, || async {
        let members = secret_room
            .members(matrix_sdk::RoomMemberships::JOIN)
            .await
            .ok()?;
        members.iter().any(|m| m.user_id() == bob_id).then_some(())
    })
    .await?;
    let secret_timeline = secret_room.timeline().await?;
    secret_timeline
        .send(RoomMessageEventContent::text_plain("the secret").into())
        .await?;
    let bob_secret_timeline = bob_secret.timeline().await?;
    let decrypted = eventually("bob to decrypt the secret", 90, || async {
        let seen = bodies(&bob_secret_timeline).await;
        seen.contains(&"the secret".to_owned()).then_some(seen)
    })
    .await?;
    if !bob_secret.latest_encryption_state().await?.is_encrypted() {
        bail!("the room is not encrypted for bob");
    }
    println!("ok encryption: bob decrypted alice's message in an encrypted room ({decrypted:?})");

    alice.sync.stop().await;
    bob.sync.stop().await;
    println!("ok all steps in {:?}", started.elapsed());
    Ok(())
}
