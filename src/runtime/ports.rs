//! The platform's ports implemented with the Workers runtime: `[vars]` and secrets, the room and
//! notifier and destination Durable Objects, `fetch` and TLS sockets, WebCrypto.

use std::cell::OnceCell;
use std::rc::Rc;

use futures::future::{select, Either};
use ruma::ServerName;
use serde_json::Value;
use worker::{AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Stub};

use super::d1::D1;
use super::destination::Enqueue;
use super::notifier::{NotifyRequest, WaitRequest};
use crate::config::{Config, ConfigError};
use crate::discovery::Destination;
use crate::http::MatrixError;
use crate::platform::{
    Crypto, FederationQueue, Fut, Http, HttpRequest, HttpResponse, Platform, RoomObjects, Settings,
    Wakeups,
};
use crate::rooms::command::RoomCommand;
use crate::sync::token::StreamPosition;

/// The platform of one invocation (a request to the Worker or to a Durable Object).
pub(crate) fn platform(env: &Env) -> Platform {
    let bindings = Rc::new(Bindings(env.clone()));
    Platform {
        sql: Rc::new(D1::new(env)),
        settings: bindings.clone(),
        rooms: bindings.clone(),
        wakeups: bindings.clone(),
        queue: bindings.clone(),
        appservices: bindings.clone(),
        pushers: bindings.clone(),
        http: bindings.clone(),
        crypto: bindings,
        blobs: Rc::new(super::media::R2(env.clone())),
    }
}

struct Bindings(Env);

impl Bindings {
    fn stub(&self, namespace: &str, name: &str) -> worker::Result<Stub> {
        self.0
            .durable_object(namespace)?
            .id_from_name(name)?
            .get_stub()
    }

    /// One request to the server's single notifier object.
    async fn to_notifier(&self, path: &str, body: String) -> worker::Result<()> {
        let stub = self.stub("NOTIFIER", "server")?;
        let request = post(&format!("https://notifier{path}"), body)?;
        stub.fetch_with_request(request).await.map(|_| ())
    }
}

fn post(url: &str, body: String) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    Request::new_with_init(url, &init)
}

thread_local! {
    /// The `[vars]` as parsed by the isolate's first invocation. They cannot change under a
    /// running isolate: new vars or secrets are a new version of the Worker, which the platform
    /// runs in new isolates (locally, a restarted workerd). Parsing them costs about twenty
    /// calls out of wasm, once per request before this.
    static CONFIG: OnceCell<Result<Config, ConfigError>> = const { OnceCell::new() };
}

impl Settings for Bindings {
    fn var(&self, name: &str) -> Option<String> {
        self.0.var(name).ok().map(|value| value.to_string())
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.0.secret(name).ok().map(|value| value.to_string())
    }

    fn config(&self) -> Result<Config, ConfigError> {
        CONFIG.with(|config| {
            config
                .get_or_init(|| Config::from_lookup(|name| self.var(name)))
                .clone()
        })
    }
}

impl RoomObjects for Bindings {
    fn command<'a>(
        &'a self,
        room_id: &'a str,
        command: &'a RoomCommand,
    ) -> Fut<'a, Result<Value, MatrixError>> {
        Box::pin(async move {
            let unreachable =
                |e: worker::Error| MatrixError::internal(format!("room object unreachable: {e}"));
            let body = command
                .to_body()
                .map_err(|e| MatrixError::internal(e.to_string()))?;
            let stub = self.stub("ROOMS", room_id).map_err(unreachable)?;
            let request = post("https://room/command", body).map_err(unreachable)?;
            let mut response = stub
                .fetch_with_request(request)
                .await
                .map_err(unreachable)?;
            let status = response.status_code();
            let body: Value = response.json().await.map_err(unreachable)?;
            if status >= 400 {
                return Err(MatrixError::from_response(status, &body));
            }
            Ok(body)
        })
    }
}

impl Wakeups for Bindings {
    fn notify(&self, users: Vec<String>) -> Fut<'_, ()> {
        Box::pin(async move {
            if users.is_empty() {
                return;
            }
            let body = serde_json::to_string(&NotifyRequest { users }).unwrap_or_default();
            // Whatever wakes users may concern an application service too: poke their queues
            // (src/runtime/appservice.rs) alongside, never waiting on the services themselves.
            let platform = platform(&self.0);
            let (notified, ()) = futures::join!(
                self.to_notifier("/notify", body),
                super::appservice::poke_all(&self.0, &platform)
            );
            if let Err(e) = notified {
                crate::log_error!("notify failed: {e}");
            }
        })
    }

    fn wait<'a>(
        &'a self,
        user_id: &'a str,
        seen: &'a StreamPosition,
        timeout_ms: u64,
    ) -> Fut<'a, ()> {
        Box::pin(async move {
            let body = serde_json::to_string(&WaitRequest {
                user_id: user_id.to_owned(),
                seen: seen.to_string(),
                timeout_ms,
            })
            .unwrap_or_default();
            if let Err(e) = self.to_notifier("/wait", body).await {
                // Evicted or unreachable: the client retries its sync, which it does anyway.
                crate::log_error!("sync wait failed: {e}");
            }
        })
    }
}

impl crate::platform::AppServiceQueues for Bindings {
    fn retry_now<'a>(&'a self, id: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            if let Err(e) = super::appservice::poke(&self.0, id, true).await {
                crate::log_warn!("could not wake the queue of {id}: {e}");
            }
        })
    }
}

impl crate::platform::PushQueues for Bindings {
    fn poke(&self, users: Vec<String>) -> Fut<'_, ()> {
        Box::pin(super::pusher::poke_all(&self.0, users))
    }
}

impl FederationQueue for Bindings {
    fn enqueue<'a>(
        &'a self,
        server: &'a ServerName,
        pdus: Vec<Value>,
        edus: Vec<Value>,
    ) -> Fut<'a, ()> {
        Box::pin(async move {
            let result = async {
                let stub = self.stub("DESTINATIONS", server.as_str())?;
                let body = serde_json::to_string(&Enqueue {
                    server: server.to_string(),
                    pdus,
                    edus,
                })?;
                stub.fetch_with_request(post("https://destination/enqueue", body)?)
                    .await
            }
            .await;
            if let Err(e) = result {
                crate::log_error!("could not queue for {server}: {e}");
            }
        })
    }

    fn wake<'a>(&'a self, server: &'a ServerName) -> Fut<'a, ()> {
        Box::pin(async move {
            let result = async {
                let stub = self.stub("DESTINATIONS", server.as_str())?;
                stub.fetch_with_str("https://destination/wake").await
            }
            .await;
            if let Err(e) = result {
                crate::log_warn!("could not wake the queue to {server}: {e}");
            }
        })
    }
}

fn method(method: crate::platform::Method) -> Method {
    match method {
        crate::platform::Method::Get => Method::Get,
        crate::platform::Method::Post => Method::Post,
        crate::platform::Method::Put => Method::Put,
        crate::platform::Method::Delete => Method::Delete,
    }
}

impl Http for Bindings {
    fn sleep(&self, ms: u64) -> Fut<'_, ()> {
        Box::pin(Delay::from(std::time::Duration::from_millis(ms)))
    }

    fn fetch(&self, request: HttpRequest) -> Fut<'_, Result<HttpResponse, String>> {
        Box::pin(async move {
            // Callers name the URL in their own messages.
            let err = |e: worker::Error| e.to_string();
            let headers = Headers::new();
            for (name, value) in &request.headers {
                headers.set(name, value).map_err(err)?;
            }
            let mut init = RequestInit::new();
            init.with_method(method(request.method))
                .with_headers(headers);
            if !request.follow_redirects {
                init.with_redirect(worker::RequestRedirect::Manual);
            }
            if let Some(body) = &request.body {
                init.with_body(Some(
                    worker::js_sys::Uint8Array::from(body.as_slice()).into(),
                ));
            }
            let outgoing = Request::new_with_init(&request.url, &init).map_err(err)?;
            let controller = AbortController::default();
            let signal = controller.signal();
            let exchange = async {
                let mut response = Fetch::Request(outgoing)
                    .send_with_signal(&signal)
                    .await
                    .map_err(err)?;
                let length = response.headers().get("content-length").ok().flatten();
                let limit = request.max_body;
                if limit.is_some() && length.and_then(|l| l.parse::<usize>().ok()) > limit {
                    return Err("response too large".to_owned());
                }
                // A small answer is read within the time limit; a big one after it.
                let body = match limit {
                    Some(_) => Some(response.bytes().await.map_err(err)?),
                    None => None,
                };
                Ok((response, body))
            };
            futures::pin_mut!(exchange);
            let (mut response, body) = match select(exchange, Delay::from(request.timeout)).await {
                Either::Left((result, _)) => result?,
                Either::Right(_) => {
                    controller.abort();
                    return Err(format!(
                        "no answer within {} ms",
                        request.timeout.as_millis()
                    ));
                }
            };
            let body = match body {
                Some(body) => body,
                None => response.bytes().await.map_err(err)?,
            };
            Ok(HttpResponse {
                status: response.status_code(),
                headers: response.headers().entries().collect(),
                body,
            })
        })
    }

    fn over_socket<'a>(
        &'a self,
        target: &'a Destination,
        request: HttpRequest,
    ) -> Fut<'a, Result<HttpResponse, String>> {
        Box::pin(async move {
            let headers: Vec<(&str, &str)> = request
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let framed = crate::discovery::http1::Request {
                method: request.method.as_str(),
                path: &request.url,
                host: &target.host_header,
                headers: &headers,
                body: request.body.as_deref().unwrap_or_default(),
            };
            let response = super::http1::send(target, &framed, request.timeout)
                .await
                .map_err(|e| e.to_string())?;
            Ok(HttpResponse {
                status: response.status,
                headers: response.headers,
                body: response.body,
            })
        })
    }
}

impl Crypto for Bindings {
    fn pbkdf2_sha256<'a>(
        &'a self,
        password: &'a str,
        salt: &'a [u8],
        iterations: u32,
        bytes: usize,
    ) -> Fut<'a, Result<Vec<u8>, MatrixError>> {
        Box::pin(super::crypto::pbkdf2_sha256(
            password, salt, iterations, bytes,
        ))
    }

    fn hmac_sha1<'a>(
        &'a self,
        key: &'a [u8],
        message: &'a [u8],
    ) -> Fut<'a, Result<Vec<u8>, MatrixError>> {
        Box::pin(super::crypto::hmac_sha1(key, message))
    }
}
