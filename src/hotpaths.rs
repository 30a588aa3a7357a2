//! Microbenchmarks of the CPU-heavy pure code (feature `bench-exports`, never in the deployed
//! Worker): a fixture per operation, built with the real room engine so ids, hashes and
//! signatures are genuine, and one timing loop. The wasm exports (`bench_exports`, timed in
//! Node/V8) and the native example (`examples/hotpaths.rs`) both call this module, so the two
//! columns of docs/hotpaths.md measure exactly the same work; only the clock differs.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::{CanonicalJsonObject, OwnedEventId, OwnedRoomId, OwnedUserId, ServerName, UserId};
use serde_json::json;

use crate::keys::SigningKey;
use crate::rooms::auth::{auth_events_for, authorize};
use crate::rooms::builder::{build_event, EventTemplate, Placement};
use crate::rooms::engine::{LocalServer, RoomEngine};
use crate::rooms::resolution::{self, StateMap};
use crate::rooms::verify::verified_form;
use crate::rooms::{Pdu, RoomVersion};

/// Every operation, with what one run of it does (the doc quotes these).
pub const OPS: [(&str, &str); 10] = [
    (
        "build_event",
        "create and sign a local m.room.message: `rooms::builder::build_event` (PDU fields, \
         content hash, ed25519 signature, reference hash → event id, parse into a `Pdu`)",
    ),
    (
        "prepare_local",
        "the whole CPU part of a local send: `RoomEngine::prepare_local` (pick auth events, \
         build and sign as above, authorise against the room state)",
    ),
    (
        "verify_pdu",
        "an incoming PDU from another server: `rooms::verify::verified_form` (ed25519 \
         signature and content hash) then `Pdu::from_json` (format check, reference hash → \
         event id); includes cloning the received JSON object",
    ),
    (
        "authorize",
        "`rooms::auth::authorize` of a member's message against its auth events and the \
         current state of a 12-member room (ruma's auth rules)",
    ),
    (
        "state_res_10",
        "`ruma::state_res::resolve` of two forks whose states differ in 5 slots each \
         (conflicted state set of 10 events)",
    ),
    (
        "state_res_100",
        "`ruma::state_res::resolve` of two forks whose states differ in 50 slots each \
         (conflicted state set of 100 events)",
    ),
    (
        "state_res_1000",
        "`ruma::state_res::resolve` of two forks whose states differ in 500 slots each \
         (conflicted state set of 1,000 events)",
    ),
    (
        "push_rules_50",
        "push rule evaluation of one message in a 51-member room for its 50 other members, \
         each with the default ruleset: `push::audience` over the room state, then \
         `push::evaluate::evaluate` (merged ruleset, ruma's matcher) per member",
    ),
    (
        "thumbnail_jpeg_12mp",
        "`media::thumbnail::make` of a 4000x3000 photo-like JPEG (quality 85) at the spec's \
         320x240 `scale` size: header, DCT-scaled decode, resize, JPEG encode",
    ),
    (
        "thumbnail_png_4mp",
        "`media::thumbnail::make` of a 2000x2000 photo-like PNG at the spec's 320x240 `scale` \
         size: header, full decode, resize, PNG encode",
    ),
];

const VERSION: RoomVersion = RoomVersion::DEFAULT;
const ALICE: &str = "@alice:example.org";
/// Members besides Alice in the room the single-event operations run in.
const MEMBERS: usize = 11;

/// One run of `name`, with its fixture already built; `None` for an unknown name.
pub fn prepare(name: &str) -> Option<Box<dyn FnMut()>> {
    Some(match name {
        "build_event" => build_event_op(),
        "prepare_local" => prepare_local_op(),
        "verify_pdu" => verify_pdu_op(),
        "authorize" => authorize_op(),
        "state_res_10" => state_res_op(5),
        "state_res_100" => state_res_op(50),
        "state_res_1000" => state_res_op(500),
        "push_rules_50" => push_rules_op(50),
        "thumbnail_jpeg_12mp" => thumbnail_op(4000, 3000, image::ImageFormat::Jpeg),
        "thumbnail_png_4mp" => thumbnail_op(2000, 2000, image::ImageFormat::Png),
        _ => return None,
    })
}

/// Times `run` and returns microseconds per run, one value per sample. `now` is a clock in
/// milliseconds (`performance.now()` in wasm, `Instant` natively). Warms up first (JIT tiers in
/// V8, caches natively); fast operations are timed in batches of about 5 ms so the clock's
/// resolution does not matter; slow ones get fewer samples within a time budget.
pub fn samples(run: &mut dyn FnMut(), now: &dyn Fn() -> f64) -> Vec<f64> {
    const WARM_UP_MS: f64 = 300.0;
    const BATCH_MS: f64 = 5.0;
    const SAMPLES: usize = 31;
    const MIN_SAMPLES: usize = 7;
    const BUDGET_MS: f64 = 4_000.0;
    let start = now();
    let mut runs = 0;
    while runs < 3 || now() - start < WARM_UP_MS {
        run();
        runs += 1;
    }
    let per_run = (now() - start) / runs as f64;
    let batch = ((BATCH_MS / per_run) as usize).max(1);
    let start = now();
    let mut out = Vec::with_capacity(SAMPLES);
    while out.len() < SAMPLES && (out.len() < MIN_SAMPLES || now() - start < BUDGET_MS) {
        let t = now();
        for _ in 0..batch {
            run();
        }
        out.push((now() - t) * 1000.0 / batch as f64);
    }
    out
}

fn user(name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:example.org")).expect("valid user id")
}

fn local_server() -> (&'static ServerName, SigningKey) {
    let name = <&ServerName>::try_from("example.org").expect("valid server name");
    (name, SigningKey::generate())
}

/// A public room as `createRoom` with the `public_chat` preset makes it, joined by Alice and
/// `members` more users.
fn public_room(key: &SigningKey, members: usize) -> RoomEngine {
    let (name, _) = local_server();
    let server = LocalServer { name, key };
    let room_id = (!VERSION.room_id_from_create_event())
        .then(|| OwnedRoomId::try_from("!bench:example.org").expect("valid room id"));
    let mut engine = RoomEngine::new(VERSION, room_id);
    let alice = user("alice");
    let mut create = json!({"room_version": VERSION.as_str()});
    if VERSION == RoomVersion::V10 {
        create["creator"] = json!(ALICE);
    }
    let mut users = json!({});
    if !VERSION.room_id_from_create_event() {
        users[ALICE] = json!(100); // from v12 the creator's power is implicit and unlisted
    }
    let setup = [
        EventTemplate::state("m.room.create", "", create),
        EventTemplate::state("m.room.member", ALICE, json!({"membership": "join"})),
        power_levels(users),
        EventTemplate::state("m.room.join_rules", "", json!({"join_rule": "public"})),
        EventTemplate::state(
            "m.room.history_visibility",
            "",
            json!({"history_visibility": "shared"}),
        ),
    ];
    let mut ts = 1_000;
    for template in setup {
        ts += 1;
        engine
            .create_local(&alice, template, ts, &server)
            .expect("setup event");
    }
    for i in 0..members {
        ts += 1;
        let member = user(&format!("m{i}"));
        engine
            .create_local(&member, join(&member, "member"), ts, &server)
            .expect("join");
    }
    engine
}

fn power_levels(users: serde_json::Value) -> EventTemplate {
    EventTemplate::state(
        "m.room.power_levels",
        "",
        json!({"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
               "ban": 50, "kick": 50, "redact": 50, "invite": 0}),
    )
}

fn join(who: &UserId, displayname: &str) -> EventTemplate {
    EventTemplate::state(
        "m.room.member",
        who.as_str(),
        json!({"membership": "join", "displayname": displayname}),
    )
}

fn message() -> EventTemplate {
    EventTemplate::message(
        "m.room.message",
        json!({"msgtype": "m.text", "body": "a benchmark message of ordinary length, about a line"}),
    )
}

fn build_event_op() -> Box<dyn FnMut()> {
    let (name, key) = local_server();
    let engine = public_room(&key, MEMBERS);
    let sender = user("m0");
    let template = message();
    let auth_events = auth_events_for(&template, &sender, VERSION, |kind, state_key| {
        engine.state().event_id(kind, state_key)
    })
    .expect("auth events");
    let room_id = engine.room_id().expect("room exists").clone();
    let prev_events = engine.forward_extremities().to_vec();
    Box::new(move || {
        let pdu = build_event(
            template.clone(),
            Placement {
                version: VERSION,
                room_id: Some(&room_id),
                sender: &sender,
                prev_events: prev_events.clone(),
                auth_events: auth_events.clone(),
                depth: 20,
                origin_server_ts: 2_000,
                server_name: name,
                key: &key,
            },
        )
        .expect("build");
        black_box(pdu);
    })
}

fn prepare_local_op() -> Box<dyn FnMut()> {
    let (name, key) = local_server();
    let engine = public_room(&key, MEMBERS);
    let sender = user("m0");
    Box::new(move || {
        let server = LocalServer { name, key: &key };
        let pdu = engine
            .prepare_local(&sender, message(), 2_000, &server)
            .expect("send");
        black_box(pdu);
    })
}

fn push_rules_op(members: usize) -> Box<dyn FnMut()> {
    use futures::FutureExt;
    let (name, key) = local_server();
    let engine = public_room(&key, members);
    let sender = user("m0");
    let server = LocalServer { name, key: &key };
    let pdu = engine
        .prepare_local(&sender, message(), 2_000, &server)
        .expect("send");
    let event = ruma::serde::Raw::new(&crate::push::evaluated_fields(&pdu)).expect("event json");
    Box::new(move || {
        let audience = crate::push::audience(engine.state(), VERSION, &pdu, name);
        let mut notified = 0;
        for (user_id, display_name) in &audience.users {
            let recipient = crate::push::evaluate::Recipient {
                user_id: UserId::parse(user_id.as_str()).expect("member id"),
                display_name: display_name.clone(),
                stored: None,
            };
            let decision =
                crate::push::evaluate::evaluate(&event, pdu.sender(), &audience.facts, &recipient)
                    .now_or_never()
                    .flatten();
            notified += decision.is_some() as usize;
        }
        assert_eq!(notified, 50, "every other member is notified");
        black_box(notified);
    })
}

fn verify_pdu_op() -> Box<dyn FnMut()> {
    let (_, key) = local_server();
    let engine = public_room(&key, MEMBERS);
    // The remote server's own key: only its public half is known to the verifier.
    let remote_key = SigningKey::generate();
    let remote = <&ServerName>::try_from("remote.example").expect("valid server name");
    let sender = UserId::parse("@bob:remote.example").expect("valid user id");
    let template = message();
    let object: CanonicalJsonObject = build_event(
        template,
        Placement {
            version: VERSION,
            room_id: engine.room_id().map(|r| r.as_ref()),
            sender: &sender,
            prev_events: engine.forward_extremities().to_vec(),
            auth_events: engine.forward_extremities().to_vec(),
            depth: 20,
            origin_server_ts: 2_000,
            server_name: remote,
            key: &remote_key,
        },
    )
    .expect("remote event")
    .json()
    .clone();
    let mut set = PublicKeySet::new();
    set.insert(
        remote_key.key_id(),
        ruma::serde::Base64::parse(remote_key.public_key_base64()).expect("base64"),
    );
    let mut keys = PublicKeyMap::new();
    keys.insert(remote.to_string(), set);
    Box::new(move || {
        let accepted = verified_form(object.clone(), VERSION, &keys).expect("verifies");
        assert_eq!(accepted.len(), object.len(), "not redacted");
        black_box(Pdu::from_json(accepted, VERSION).expect("parses"));
    })
}

fn authorize_op() -> Box<dyn FnMut()> {
    let (name, key) = local_server();
    let engine = public_room(&key, MEMBERS);
    let server = LocalServer { name, key: &key };
    let pdu = engine
        .prepare_local(&user("m0"), message(), 2_000, &server)
        .expect("send");
    Box::new(move || {
        authorize(
            pdu.as_ref(),
            VERSION,
            |id| engine.known(id).cloned(),
            |kind, state_key| engine.state().get(kind, state_key).cloned(),
        )
        .expect("authorised");
    })
}

/// Two forks of one public room, each built on the same state by its own engine. Each side
/// changes the power levels and the topic, and changes `per_side - 2` membership slots that the
/// other side changes too: on side A those users join, on side B every tenth is banned by Alice
/// (a power event, so the resolution's power-event ordering has work) and the rest join with
/// another display name. The conflicted state set is `2 * per_side` events.
struct Forks {
    maps: [StateMap; 2],
    events: HashMap<OwnedEventId, Arc<Pdu>>,
}

fn forks(per_side: usize) -> Forks {
    let (name, key) = local_server();
    let server = LocalServer { name, key: &key };
    let base = public_room(&key, 2);
    let snapshot: Vec<Arc<Pdu>> = base.state().events().cloned().collect();
    let alice = user("alice");
    let mut events: HashMap<OwnedEventId, Arc<Pdu>> = snapshot
        .iter()
        .map(|p| (p.event_id().to_owned(), p.clone()))
        .collect();
    let mut maps = [StateMap::new(), StateMap::new()];
    for (side, map) in maps.iter_mut().enumerate() {
        let mut engine = base.clone();
        let mut ts = 10_000 + side as u64;
        let mut send = |sender: &UserId, template: EventTemplate| {
            ts += 2;
            let pdu = engine
                .create_local(sender, template, ts, &server)
                .expect("fork event")
                .pdu;
            events.insert(pdu.event_id().to_owned(), pdu);
        };
        let mut users = json!({"@m0:example.org": 50 + side});
        if !VERSION.room_id_from_create_event() {
            users[ALICE] = json!(100);
        }
        send(&alice, power_levels(users));
        send(
            &alice,
            EventTemplate::state("m.room.topic", "", json!({"topic": format!("side {side}")})),
        );
        for i in 0..per_side - 2 {
            let target = user(&format!("u{i}"));
            if side == 1 && i % 10 == 0 {
                let ban = json!({"membership": "ban", "reason": "bench"});
                send(
                    &alice,
                    EventTemplate::state("m.room.member", target.as_str(), ban),
                );
            } else {
                send(&target, join(&target, &format!("side {side}")));
            }
        }
        *map = engine
            .state()
            .events()
            .map(|p| {
                let slot = (
                    p.kind().to_string().into(),
                    p.state_key().unwrap_or("").into(),
                );
                (slot, p.event_id().to_owned())
            })
            .collect();
    }
    Forks { maps, events }
}

/// One resolution of the two forks, auth chains and (v12) conflicted subgraph included, as the
/// room engine runs it.
fn resolve(forks: &Forks) -> StateMap {
    resolution::resolve(VERSION, &[&forks.maps[0], &forks.maps[1]], |id| {
        forks.events.get(id).cloned()
    })
    .expect("resolves")
}

fn state_res_op(per_side: usize) -> Box<dyn FnMut()> {
    let forks = forks(per_side);
    Box::new(move || {
        black_box(resolve(&forks));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_runs_and_forks_conflict_as_described() {
        for (name, _) in OPS {
            if name != "state_res_1000" {
                prepare(name).expect("known op")();
            }
        }
        let forks = forks(50);
        let conflicted = forks.maps[0]
            .iter()
            .filter(|(slot, id)| forks.maps[1].get(*slot) != Some(*id))
            .count();
        assert_eq!(conflicted, 50);
        assert_eq!(forks.maps[0].len(), forks.maps[1].len());
        // The resolution does real work: a ban (power event) beats the other side's join.
        let resolved = resolve(&forks);
        assert_eq!(resolved.len(), forks.maps[0].len());
        let slot = ("m.room.member".into(), "@u0:example.org".to_owned());
        assert_eq!(resolved[&slot], forks.maps[1][&slot]);
        assert_ne!(resolved[&slot], forks.maps[0][&slot]);
    }
}

/// A thumbnail of a picture with detail everywhere (noise over gradients: a flat colour would
/// decode unrealistically fast).
fn thumbnail_op(width: u32, height: u32, format: image::ImageFormat) -> Box<dyn FnMut()> {
    use crate::media::thumbnail::{make, Method};
    let mut seed = 0x2545_f491_u32;
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed & 63) as u8;
        image::Rgb([
            (x % 256) as u8 / 2 + noise,
            (y % 256) as u8 / 2 + noise,
            128 + noise,
        ])
    });
    let mut bytes = Vec::new();
    let encoded = match format {
        image::ImageFormat::Jpeg => picture.write_with_encoder(
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85),
        ),
        _ => picture.write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes)),
    };
    encoded.expect("the fixture encodes");
    Box::new(move || {
        let made = make(&bytes, format, (320, 240), Method::Scale, u64::MAX);
        black_box(made.expect("the thumbnail is made"));
    })
}
